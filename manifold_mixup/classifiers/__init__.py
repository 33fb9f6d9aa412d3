"""The classifier networks of the papers (WRN, PreAct ResNets) and their recipes, registered by name in
common/registry.py: ``wrn`` and ``preactresnet`` (the constructors checkpoints name) and the named recipes
``wrn28_2``, ``wrn28_10``, ``preactresnet18``, ``preactresnet34`` (:mod:`classifiers.recipes`)."""
