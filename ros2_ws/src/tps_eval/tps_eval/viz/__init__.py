"""Visualisation for RViz and Foxglove: MarkerArray conversions (``markers``) and the
``stack_markers`` node (``markers_node``) that draws the stack's outputs."""
