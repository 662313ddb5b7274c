"""Every node describes its parameters to ROS (``ros2 param describe``) and refuses a runtime
``set`` of a read-only one -- checked through rclpy's parameter services over real DDS.

Each node runs as its console script with its shipped parameter file; a client node in the test
calls ``describe_parameters``/``set_parameters`` like ``ros2 param`` does.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import rclpy
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import DescribeParameters, SetParameters
from tps_common.params import config_dir, load_schema

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "planner"))
from ros_harness import start_node, stop  # noqa: E402

pytestmark = pytest.mark.ros

SERVICE_TIMEOUT_S = 60.0   # process start (a model load, SUMO) + discovery on a loaded 2-core host
RETRY_S = 5.0              # a request unanswered this long is sent again (within SERVICE_TIMEOUT_S)
# (executable, schema name, extra ROS parameters): every node of the stack that has a schema.
NODES = [
    ("controller_node", "controller_node", {}),
    ("fallback_node", "fallback_node", {}),
    ("trajectory_arbiter", "trajectory_arbiter", {}),
    ("perception_node", "perception_node", {}),
    ("planner_node", "planner_node", {"model_path": "/nonexistent/planner.pt"}),   # no model: still describes
    ("monitor_node", "monitor_node", {}),
    ("sim_bridge", "sim_bridge", {"scenario": "highway", "duration_s": 5.0, "lidar_enabled": False}),
]


def _call(node, client, request):
    deadline = time.monotonic() + SERVICE_TIMEOUT_S
    while not client.wait_for_service(timeout_sec=0.2):
        assert time.monotonic() < deadline, f"service {client.srv_name} never appeared"
    # A service can be discovered before its reply path has matched the client, and that first
    # request is then lost (DDS); ``ros2 param`` users just ask again, so the test re-asks every
    # RETRY_S within the same deadline.
    while True:
        future = client.call_async(request)
        remaining = deadline - time.monotonic()
        rclpy.spin_until_future_complete(node, future, timeout_sec=max(0.0, min(RETRY_S, remaining)))
        if future.done() or time.monotonic() >= deadline:
            break
        client.remove_pending_request(future)
    assert future.done(), f"{client.srv_name} did not answer"
    return future.result()


@pytest.fixture(scope="module")
def client_node():
    rclpy.init()
    node = rclpy.create_node("param_describe_client")
    yield node
    node.destroy_node()
    rclpy.try_shutdown()


@pytest.mark.parametrize("executable, schema_name, extra", NODES, ids=[n[0] for n in NODES])
def test_descriptors_carry_description_range_and_read_only(client_node, tmp_path, executable,
                                                           schema_name, extra):
    schema = load_schema(schema_name)["parameters"]
    name = f"describe_{executable}"
    params_file = config_dir() / f"{schema_name}.param.yaml"
    proc = start_node(executable, name, {}, extra, log_dir=tmp_path, params_file=params_file)
    try:
        describe = client_node.create_client(DescribeParameters, f"/{name}/describe_parameters")
        resp = _call(client_node, describe, DescribeParameters.Request(names=sorted(schema)))
        got = {d.name: d for d in resp.descriptors}
        assert sorted(got) == sorted(schema), (tmp_path / f"{name}.log").read_text()[-2000:]
        for pname, spec in schema.items():
            d = got[pname]
            assert d.description.strip(), f"{executable}.{pname}: empty description"
            assert d.read_only, f"{executable}.{pname}: not read-only"
            lo = spec.get("minimum", spec.get("exclusiveMinimum"))
            hi = spec.get("maximum", spec.get("exclusiveMaximum"))
            if spec["type"] == "number" and (lo is not None or hi is not None):
                (rng,) = d.floating_point_range
                assert lo is None or rng.from_value == pytest.approx(lo)
                assert hi is None or rng.to_value == pytest.approx(hi)
            if spec["type"] == "integer" and (lo is not None or hi is not None):
                (rng,) = d.integer_range
                assert lo is None or rng.from_value == lo
                assert hi is None or rng.to_value == hi
            if spec.get("unit"):
                assert spec["unit"] in d.description

        # A runtime set of a read-only parameter is refused with a reason, not silently ignored.
        first = sorted(schema)[0]
        setter = client_node.create_client(SetParameters, f"/{name}/set_parameters")
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="x")
        res = _call(client_node, setter, SetParameters.Request(
            parameters=[ParameterMsg(name=first, value=value)]))
        (result,) = res.results
        assert not result.successful
        assert "read-only" in result.reason or "read only" in result.reason.lower()
        assert proc.poll() is None, "the node died on a refused set"
    finally:
        stop(proc)
