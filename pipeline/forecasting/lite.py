"""The served network in LiteRT: the same weights in TensorFlow's small on-device runtime.

A request is one window through a small LSTM. In TensorFlow's eager runtime even the
compiled (XLA) call costs about 0.3 ms in a tight loop and 1-1.5 ms in a server, where
every pause between requests leaves its long C++ dispatch path cold in the CPU's caches;
LiteRT's interpreter runs a one-layer network in about 0.05 ms. The network is converted
when it is logged (`convert`, checked against Keras on random windows before it is kept),
and a serving process with it never imports TensorFlow, which by itself slows every
request of a process by about 0.8 ms here. Stacked layers convert to plain loops (0.4-1 ms
a window, where XLA's compiled code takes 0.5 ms): still no slower, counting that. A
version logged without the conversion is served by TensorFlow (`compiled`).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TOLERANCE = 1e-4  # largest difference from Keras allowed on the network's raw outputs
Network = Callable[[np.ndarray], np.ndarray]  # (1, window, features) float32 -> outputs


def convert(net: Any, window: int, n_features: int) -> bytes:
    """The Keras network as a LiteRT flatbuffer for one window at a time."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        saved = str(Path(tmp) / "saved_model")
        net.export(
            saved,
            format="tf_saved_model",
            verbose=False,
            input_signature=[tf.TensorSpec([1, window, n_features], tf.float32)],
        )
        return bytes(tf.lite.TFLiteConverter.from_saved_model(saved).convert())


class LiteNetwork:
    """A converted network in LiteRT's interpreter, callable like the compiled one."""

    def __init__(self, flatbuffer: bytes):
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_content=flatbuffer, num_threads=1)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self.input_shape = tuple(self._interpreter.get_input_details()[0]["shape"])
        # one interpreter holds one request's tensors: the server's threads take turns
        # (a call is far shorter than a request)
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            self._interpreter.set_tensor(self._input, np.asarray(x, dtype=np.float32))
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._output)  # a copy


def compiled(net: Any, shape: tuple[int, ...]) -> Network:
    """The network as one compiled graph for `shape`, called through its concrete function
    (skips tf.function's argument binding) with a tensor (arrays convert slowly)."""
    import tensorflow as tf

    graph = tf.function(
        lambda x: net(x, training=False),
        jit_compile=True,
        input_signature=[tf.TensorSpec(shape, tf.float32)],
    ).get_concrete_function()
    return lambda x: np.asarray(graph(tf.constant(x, dtype=tf.float32)))


def largest_difference(a: Network, b: Network, shape: tuple[int, ...], n: int = 16) -> float:
    """The largest output difference between two runtimes over `n` random windows
    (standard normal: what scaled features look like)."""
    windows = np.random.default_rng(0).standard_normal((n, *shape)).astype(np.float32)
    return max(float(np.abs(a(x) - b(x)).max()) for x in windows)
