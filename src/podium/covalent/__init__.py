"""Covalent Cloud function services on Podium: the wire records and the deploy bundle.

A deployed Covalent service is an ordinary Podium endpoint and version. The server reads only the
JSON parts of what the `covalent-cloud` client sends (the asset headers, the endpoint records):
the pickled functions are stored in the version's bundle and unpickled only by its workers
(`podium.worker.covalent_service`), in an environment with the client's cloudpickle and Python.
"""
