"""The served network in LiteRT: the same weights in TensorFlow's small on-device runtime.

In TensorFlow's eager runtime even the compiled (XLA) call costs about 0.3 ms in a tight
loop and 1-1.5 ms in a server, where every pause between requests leaves its long C++
dispatch path cold in the CPU's caches; LiteRT's interpreter runs a one-layer network in
a fraction of that. The network is converted when it is logged (`convert`, checked against
Keras on random windows, one and a batch, before it is kept), and a serving process with
it never imports TensorFlow, which by itself slows every request of a process by about
0.8 ms here. A version logged without the conversion is served by TensorFlow (`compiled`).

A request is many windows: its newest, and for the adaptive widths every earlier session
it carries, up to the version's lookback (250: 251 windows; a 250-row request has 209).
They go through the network in ONE call. Measured on the 2-core machine, 2026-12-06, 209
random windows through the default network (32 units, one layer, window 20), in-process
(throw-away timing scripts), per request:

    one LiteRT call a window (versions logged before this)        7.5 ms
    LiteRT, the LSTM's loop kept, converted at a fixed batch 251   1.07-1.1 ms (zero-padded)
    LiteRT, the LSTM unrolled, the batch left open (chosen)        0.81 ms
    the compiled tf.function at a fixed batch 251                  1.28 ms
    a NumPy forward pass (float32, gates i, f, c, o)               1.74 ms

and for stacked layers (64 units then 32, window 40; 128 then 64, window 60): a call a
window 70 / 174 ms, the loop at batch 251 18 / 166 ms, unrolled 11 / 45 ms, TensorFlow
14 / 69 ms, NumPy 42 / 80-900 ms. So: LiteRT with a batch dimension, in the form that
converts (unrolled, the batch left open). Why not the others: a flatbuffer converted at a
batch of one cannot be resized (XNNPack fails to reshape it; without XNNPack a reshape in
it keeps the one), a batch left open does not convert while the LSTM keeps its loop (its
TensorList needs a static shape), a fixed batch wastes its padding and grows with it (8 MB
for the largest network above, 0.8 MB unrolled), and NumPy makes about 160 calls a
request, each about 10 us in a server. Unrolled, a lone window is a little faster for
small networks (0.023 against 0.036 ms) and slower for the largest (0.5-1.9 against
0.26-0.86 ms); it matters only for versions without the adaptive widths. Resizing to
another number of windows costs about 20 us. The outputs are the loop's (the same digits
on a request's every column here) and within 3e-7 of Keras (2.5e-6 at 128 units).
Versions logged before keep their batch-one flatbuffer and go a call a window
(`LiteNetwork`); TensorFlow's compiled graph has a fixed shape, so it is compiled for one
window and for a request's most (`Padded`).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TOLERANCE = 1e-4  # largest difference from Keras allowed on the network's raw outputs
Network = Callable[[np.ndarray], np.ndarray]  # (n, window, features) float32 -> (n, outputs)
MAX_BATCH = 256  # most windows a call: a request's (lookback 250: 251) in one


def unrolled(net: Any) -> Any:
    """The same network (a copy, the same weights) with its LSTM layers' loops unrolled:
    one step after another in the graph, no loop left for the converter to keep."""
    import keras

    def clone(layer: Any) -> Any:
        config = layer.get_config()
        if isinstance(layer, keras.layers.LSTM):
            config["unroll"] = True
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(net, clone_function=clone)
    copy.set_weights(net.get_weights())
    return copy


def convert(net: Any, window: int, n_features: int) -> bytes:
    """The Keras network as a LiteRT flatbuffer taking any number of windows a call: its
    LSTM unrolled (`unrolled`: a loop converts only with a fixed batch, and runs slower)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        saved = str(Path(tmp) / "saved_model")
        unrolled(net).export(
            saved,
            format="tf_saved_model",
            verbose=False,
            input_signature=[tf.TensorSpec([None, window, n_features], tf.float32)],
        )
        return bytes(tf.lite.TFLiteConverter.from_saved_model(saved).convert())


class LiteNetwork:
    """A converted network in LiteRT's interpreter, callable like the compiled one, on any
    number of windows: in one call where the flatbuffer leaves its batch open (`convert`),
    one call a window where it is fixed at one (versions logged before: such a flatbuffer
    cannot be resized, a reshape in it keeps the batch of one)."""

    def __init__(self, flatbuffer: bytes):
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_content=flatbuffer, num_threads=1)
        self._interpreter.allocate_tensors()
        details = self._interpreter.get_input_details()[0]
        self._input = details["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self.input_shape = tuple(int(n) for n in details["shape"])
        self.batched = int(details["shape_signature"][0]) == -1
        # one interpreter holds one request's tensors: the server's threads take turns
        # (a call is far shorter than a request)
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not self.batched and len(x) != self.input_shape[0]:
            return np.concatenate([self(x[i : i + 1]) for i in range(len(x))])
        with self._lock:
            if x.shape != self.input_shape:  # another number of windows: resized (~20 us)
                self._interpreter.resize_tensor_input(self._input, x.shape, strict=True)
                self._interpreter.allocate_tensors()
                self.input_shape = x.shape
            self._interpreter.set_tensor(self._input, x)
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._output)  # a copy


class Padded:
    """Up to `batch` windows through networks of fixed shapes (the compiled ones): a lone
    window through `one`, more through `many`, which takes `batch`, the spare rows
    zero-filled and their outputs dropped."""

    def __init__(self, one: Network, many: Network, batch: int):
        self.one, self.many, self.batch = one, many, batch

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        n = len(windows)
        if n == 1:
            return self.one(windows)
        padded = np.zeros((self.batch, *windows.shape[1:]), dtype=np.float32)
        padded[:n] = windows  # more than `batch` windows fail here: the caller splits them
        return np.asarray(self.many(padded))[:n]


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
    """The largest output difference between two runtimes over `n` random inputs of
    `shape` (windows, standard normal: what scaled features look like)."""
    windows = np.random.default_rng(0).standard_normal((n, *shape)).astype(np.float32)
    return max(float(np.abs(a(x) - b(x)).max()) for x in windows)
