"""ament_python package that is also an ordinary pip-installable package."""
from setuptools import find_packages, setup

PACKAGE_NAME = "tps_planner"

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
    description="Planner, confidence monitor, point-cloud fallback planner, trajectory arbiter and controller, and their nodes.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "controller_node = tps_planner.nodes.controller_node:main",
            "fallback_node = tps_planner.nodes.fallback_node:main",
            "monitor_node = tps_planner.nodes.monitor_node:main",
            "planner_node = tps_planner.nodes.planner_node:main",
            "trajectory_arbiter = tps_planner.nodes.trajectory_arbiter:main",
        ],
    },
)
