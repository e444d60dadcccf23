"""The forkserver's first import (``workers.launch``): what must hold before it imports the
worker libraries.

bitsandbytes asks torch for the GPU's compute capability as it is imported (diffusers' models
import it), which initialises the CUDA driver, and a driver initialised before a fork is unusable
in every worker forked after it. So the forkserver gets a stand-in for it: found by
``importlib.util.find_spec`` (diffusers checks that it is installed) and imported by name, it
loads the real module in the worker, when one of its attributes is first read.
"""

import importlib
import importlib.util
import os
import sys
import types

from workers.launch import apply_worker_environment

LOADED_ON_FIRST_USE = ("bitsandbytes",)


class _LoadedOnFirstUse(types.ModuleType):
    """In ``sys.modules`` in place of a module until something reads one of its attributes.

    (``importlib.util.LazyLoader`` loads on any attribute, ``__spec__`` included, which
    ``find_spec`` reads.)"""

    def __getattr__(self, attribute: str):  # only for what the placeholder itself lacks
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        real = importlib.import_module(name)
        self.__dict__.update(real.__dict__)  # for the modules that hold the placeholder
        return getattr(real, attribute)


def _stand_in_for(name: str) -> None:
    spec = importlib.util.find_spec(name)
    if spec is None or name in sys.modules:
        return
    placeholder = _LoadedOnFirstUse(name)
    placeholder.__spec__ = spec
    placeholder.__file__ = spec.origin  # what inspect.getmodule reads of every module in sys.modules
    sys.modules[name] = placeholder


apply_worker_environment()
# torch.cuda.is_available() through NVML, which leaves the CUDA driver alone, should a preloaded
# library ask after all.
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
for _name in LOADED_ON_FIRST_USE:
    _stand_in_for(_name)
