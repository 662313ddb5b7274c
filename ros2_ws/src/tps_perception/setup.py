"""ament_python package that is also an ordinary pip-installable package."""
from setuptools import find_packages, setup

PACKAGE_NAME = "tps_perception"

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
    description="Lidar/camera preprocessing, 3D detector and agent tokenizer, and the perception node.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "perception_node = tps_perception.nodes.perception_node:main",
            "traffic_light_reader = tps_perception.nodes.traffic_light_reader:main",
        ],
    },
)
