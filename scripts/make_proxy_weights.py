"""Retrain the Fashion-MNIST proxy classifier with `proxy.RECIPE` and write the weights the package ships.

    PYTHONPATH=$PWD python3 scripts/make_proxy_weights.py   # then pin the printed SHA-256 in proxy.py

The shipped file, not a retraining, is what every evaluation loads: training reproduces the test accuracy
closely but not bit for bit on another machine or library build, and the proxy metrics must not move.
"""

import json

from safetensors.torch import save_file

from mpdit_bench.evaluation import proxy
from mpdit_bench.evaluation.inception import sha256_file

if __name__ == "__main__":
    state, accuracy = proxy.train_proxy(proxy.RECIPE)
    meta = {"recipe": json.dumps(proxy.RECIPE, sort_keys=True), "test_accuracy": f"{accuracy:.4f}"}
    tmp = proxy.SHIPPED.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=meta)
    tmp.replace(proxy.SHIPPED)
    print(json.dumps({"path": str(proxy.SHIPPED), "sha256": sha256_file(proxy.SHIPPED), "test_accuracy": accuracy}))
