import os
import sys

from pipeline.cli import main

rc = main()
if rc >= 128:  # stopped by a signal: what it started is stopped and said; exit now, not
    sys.stdout.flush()  # after seconds of Airflow's and TensorFlow's teardown
    sys.stderr.flush()
    os._exit(rc)
sys.exit(rc)
