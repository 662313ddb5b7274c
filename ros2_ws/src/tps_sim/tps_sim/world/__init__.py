"""The SUMO-based closed-loop world (issue 4): scenarios, ego model, ground truth.

Public API::

    from tps_sim.world import SimWorld, WorldConfig, EgoControl, WorldState, AgentState, \\
        ConfigError, SCENARIOS

See ``tps_sim.world.world`` for the episode timeline and ``README.md`` of tps_sim for the
scenario table. Only ``tps_sim.world.sumo_adapter`` imports libsumo / sumolib.
"""

from tps_sim.world.config import ConfigError, EgoControl, Instruction, WorldConfig
from tps_sim.world.ego_model import EgoModel, EgoModelParams, EgoModelState
from tps_sim.world.road import RoadGeometry
from tps_sim.world.scenarios import SCENARIOS, Scenario
from tps_sim.world.state import (
    AgentState,
    Futures,
    StaticObjects,
    WorldState,
    attach_futures,
    states_digest,
)
from tps_sim.world.world import BENCHMARK_DENSITY, BENCHMARK_SCENARIO, SimWorld

__all__ = [
    "SCENARIOS", "AgentState", "BENCHMARK_DENSITY", "BENCHMARK_SCENARIO",
    "ConfigError", "EgoControl", "EgoModel", "EgoModelParams", "EgoModelState", "Futures",
    "Instruction", "RoadGeometry", "Scenario", "SimWorld", "StaticObjects", "WorldConfig",
    "WorldState", "attach_futures", "states_digest",
]
