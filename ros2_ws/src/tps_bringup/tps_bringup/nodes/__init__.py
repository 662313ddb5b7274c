"""Demo nodes used by config/graph/hello.yaml and the runner's tests."""
