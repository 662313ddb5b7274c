"""ament_python package that is also an ordinary pip-installable package."""
from setuptools import find_packages, setup

PACKAGE_NAME = "tps_sim"

setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE_NAME]),
        ("share/" + PACKAGE_NAME, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="TPS onboard stack developers",
    maintainer_email="tps-drive@example.org",
    description="SUMO-based closed-loop world, lidar/camera sensor models, CARLA-ROS-bridge-compatible bridge, faults, datasets, recording, the per-step episode log.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "sim_bridge = tps_sim.nodes.sim_bridge:main",
            "tps-sim = tps_sim.cli:main",
        ],
    },
)
