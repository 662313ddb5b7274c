"""ament_python package that is also an ordinary pip-installable package."""
from setuptools import find_packages, setup

PACKAGE_NAME = "tps_eval"

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
    description="Offline evaluation: closed-loop suites, detector evaluation, expert check, metrics, reports and BEV plots (the tps-eval CLI).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "tps-eval = tps_eval.cli:main",
            "tps-replay = tps_eval.replay.cli:main",
            "stack_markers = tps_eval.viz.markers_node:main",
        ],
    },
)
