"""ament_python package that is also an ordinary pip-installable package."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE_NAME = "tps_bringup"

setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE_NAME]),
        ("share/" + PACKAGE_NAME, ["package.xml"]),
        # `ros2 launch tps_bringup stack.launch.py` (the launch files read config/graph/*.yaml of $TPS_ROOT)
        ("share/" + PACKAGE_NAME + "/launch", sorted(glob("launch/*.launch.py"))),
    ],
    install_requires=["setuptools", "pyyaml"],
    zip_safe=True,
    maintainer="TPS onboard stack developers",
    maintainer_email="tps-drive@example.org",
    description="Node-graph runner: starts the graph declared in config/graph/*.yaml as processes or one executor.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "tps-bringup = tps_bringup.cli:main",
            "tps_demo_talker = tps_bringup.nodes.talker:main",
            "tps_demo_listener = tps_bringup.nodes.listener:main",
        ],
    },
)
