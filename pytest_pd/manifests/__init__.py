"""Kubernetes manifests for a cluster file (`pytest-pd manifests NAME --format lws|rbg`).

Pure: cluster spec -> plain dicts, one per Kubernetes object. :mod:`.processes` turns the cluster's
launch plan (:func:`pytest_pd.cluster.commands.launch_plan`) into the processes to deploy, with the
few address substitutions a pod needs; :mod:`.pods` makes their pod templates; :mod:`.render` wraps
them in LeaderWorkerSets or a RoleBasedGroup plus Services; :mod:`.attach` writes the
``launcher: attach`` cluster file that points pytest-pd at the deployed router.
"""
