"""Training pipeline for the iqs-daemon quality model (needs the ``train`` extra).

Run everything with ``python -m training --biq PATH/TO/BIQ2021`` (see models/README.md).
The runtime package ``iqs_daemon`` never imports this.
"""
