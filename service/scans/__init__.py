"""Bulk scans: jobs over uploaded files of profiles (`service`), reading an upload (`upload`),
the workers that score its chunks (`worker`), the clusters mode (`clusters`), and the command
line's client of a remote server (`client`)."""
