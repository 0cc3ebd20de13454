"""Where trials keep their checkpoints and best epochs: a folder or S3."""
