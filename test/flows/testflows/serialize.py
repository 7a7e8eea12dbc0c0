"""Prints every test flow as `prefect register` sends it: {module: serialized flow}.

Like Flow.register, it serializes with build=True, which adds the flow to
its storage and builds the storage (Module storage builds nothing).
"""

import importlib
import json

from testflows import FLOWS


def main():
    out = {}
    for name in FLOWS:
        flow = importlib.import_module(name).flow
        out[name] = flow.serialize(build=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
