"""The collection's contract (plugins/module_utils/contract.py), loaded from COLLECTION_ROOT.

The service states no rule of its own about backups, pools, retention, names, hosts or
databases: it runs the very file the collection's filter and modules run, so the API refuses
what a playbook would refuse, with the same message.
"""
import importlib.util
import os
import sys

from .config import load_config

_NAME = "borgfleet_collection_contract"


def _load():
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    path = os.path.join(load_config()["COLLECTION_ROOT"], "plugins", "module_utils", "contract.py")
    spec = importlib.util.spec_from_file_location(_NAME, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[_NAME] = module
    return module


contract = _load()
ContractError = contract.ContractError
