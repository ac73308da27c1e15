"""NORA's built-in trainers, registered by entry point like any user's (group
``nora.trainers``): examples of trainers on the seams and negative controls."""
