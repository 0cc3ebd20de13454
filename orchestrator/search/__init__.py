"""The extension points of a sweep: search algorithms, schedulers (PBT, PB2), guard rails, as Ray Tune objects."""
