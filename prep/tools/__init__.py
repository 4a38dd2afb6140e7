"""Tools that read a finished run: loaders for the training frameworks (load, random_access, consumers) and
the commands prep-verify, prep-inspect, prep-report and prep-readbench."""
