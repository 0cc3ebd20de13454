"""What runs in a Tune trial process or a Ray Train worker: the training session, DDP, Ray Train.
Torch lives here."""
