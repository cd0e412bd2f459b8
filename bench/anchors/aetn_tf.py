#!/usr/bin/env python3
"""AETN (KDD 2020) in TensorFlow 2 on CPU: the same model and sizes as the project's src/model/aetn.ts (paper size),
timed the way a user of TF would run it (tf.function graph, and tf.function(jit_compile=True)).

This is the speed anchor of bench/tf-anchor.ts: the team's own TensorFlow port of the
model, kept here so the benchmark is self-contained. It is benchmark-only Python: nothing in src/
imports or runs it. bench/tf-anchor.ts installs tensorflow-cpu into .cache/tf-anchor-venv and runs
this script with --serve, so that the TF side is built and traced once and each measurement is one
request, alternating with the project's engine in the same benchmark run.

  python aetn_tf.py [--apps 2000] [--threads 2] [--reps16 10] [--reps128 5] [--reps-embed 5] [--out FILE]
  python aetn_tf.py --serve [--apps 2000] [--threads 2]
      reads one JSON request per stdin line, {"mode": "graph"|"xla", "workload": "train16"|"embed1000"|...,
      "reps": N}, and answers each with one JSON line (the row the table mode prints); models are
      built and traced on first use of a mode.

Workloads (all after warm-up, median of the repetitions; one repetition = one call):
  train B16, train B128 : one step = batch build (numpy) + forward + backward + Adam (Keras 3 Adam,
                          lr 1e-4, inside the tf.function) + fetching the loss value
  embed B1000 (and B128): u for 1000 (128) users, no dropout, no [MASK], no output heads, last encoder
                          layer computes the retention query only (as aetn.ts does), result fetched
Users: 50 retained apps, 25 installs + 25 uninstalls, 3 [MASK] per sequence (the bench's users).
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ap = argparse.ArgumentParser()
ap.add_argument("--apps", type=int, default=2000)
ap.add_argument("--cats", type=int, default=50)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--inter", type=int, default=1)
ap.add_argument("--reps16", type=int, default=10)
ap.add_argument("--reps128", type=int, default=5)
ap.add_argument("--reps-embed", type=int, default=5)
ap.add_argument("--modes", default="graph,xla")
ap.add_argument("--workloads", default="train16,train128,embed1000,embed128")
ap.add_argument("--flops-only", action="store_true")
ap.add_argument("--out", default="")
ap.add_argument("--serve", action="store_true", help="answer JSON timing requests on stdin (bench/tf-anchor.ts)")
args = ap.parse_args()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(args.threads)
tf.config.threading.set_inter_op_parallelism_threads(args.inter)

# Paper sizes (bench/model-train.ts PAPER) and the defaults of src/model/config.ts.
M = args.apps
NCAT = args.cats
D, DFF, H, ENC, DEC, DEMB, AE = 512, 1024, 8, 2, 1, 128, 256
I = 25
T = 1 + 2 * I
DATES = 52
R = 50
MASK_COUNT = 3
DROP_IN, DROP_ATT, DROP_FFN = 0.05, 0.1, 0.1
LEAKY = 0.2
L2 = 1.5e-7
POS_W = 100.0
LN_EPS = 1e-6


def flops_per_user(training: bool) -> float:
    """aetn.ts flopsPerUser, the same formula (2 x MACs of the matmuls, x3 for training)."""
    tokens, masked = 2 * I, (2 * MASK_COUNT if training else 0)
    mac = R * D
    if training:
        mac += D * AE + AE * D + D * M

    def layer(tq):
        return 2 * T * D * D + 2 * D * D + 2 * tq * D * D + 2 * tq * T * D + 2 * tq * D * DFF

    last_full = training and masked > 0
    mac += (ENC - 1) * layer(T) + layer(T if last_full else 1) + D * DEMB
    if training:
        mac += DEMB * D + DEC * layer(T) + (tokens + masked) * (D * M + D)
        mac += DEMB * D + D * M
    return 2 * mac * (3 if training else 1)


class AETN(tf.Module):
    def __init__(self, seed=1):
        super().__init__()
        rng = np.random.default_rng(seed)

        def glorot(name, shape, fan=None):
            fi, fo = fan or shape
            lim = math.sqrt(6 / (fi + fo))
            return tf.Variable(rng.uniform(-lim, lim, size=shape).astype(np.float32), name=name)

        def zeros(name, shape):
            return tf.Variable(np.zeros(shape, np.float32), name=name)

        def ones(name, shape):
            return tf.Variable(np.ones(shape, np.float32), name=name)

        self.app_cat = tf.constant(np.arange(M) % NCAT, tf.int32)
        self.W_app = glorot("W_app", [M, D])
        self.C = glorot("C", [NCAT, D])
        self.b_out = zeros("b_out", [M])
        self.ae_b1 = zeros("ae_b1", [D])
        self.ae_W2 = glorot("ae_W2", [D, AE])
        self.ae_b2 = zeros("ae_b2", [AE])
        self.ae_W3 = glorot("ae_W3", [AE, D])
        self.ae_b3 = zeros("ae_b3", [D])
        self.e_ret = glorot("e_ret", [1, D])
        self.e_mask = glorot("e_mask", [1, D])
        self.e_date = glorot("e_date", [DATES, D])
        self.e_install = glorot("e_install", [1, D])
        self.e_uninstall = glorot("e_uninstall", [1, D])

        def layer(p):
            kv = [2 * D, D]  # modified attention: Glorot over the concatenated [2d, d]
            return dict(
                Wq=glorot(p + "Wq", [D, D]), Wk=glorot(p + "Wk", [D, D], kv), Wv=glorot(p + "Wv", [D, D], kv),
                WkRet=glorot(p + "WkRet", [D, D], kv), WvRet=glorot(p + "WvRet", [D, D], kv), Wo=glorot(p + "Wo", [D, D]),
                ln1g=ones(p + "ln1g", [D]), ln1b=zeros(p + "ln1b", [D]),
                Wff1=glorot(p + "Wff1", [D, DFF]), bff1=zeros(p + "bff1", [DFF]),
                Wff2=glorot(p + "Wff2", [DFF, D]), bff2=zeros(p + "bff2", [D]),
                ln2g=ones(p + "ln2g", [D]), ln2b=zeros(p + "ln2b", [D]),
            )

        self.enc = [layer(f"enc{l}.") for l in range(ENC)]
        self.W_b = glorot("W_b", [D, DEMB])
        self.b_b = zeros("b_b", [DEMB])
        self.W_ud = glorot("W_ud", [DEMB, D])
        self.b_ud = zeros("b_ud", [D])
        self.dec = [layer(f"dec{l}.") for l in range(DEC)]
        self.W_ru = glorot("W_ru", [DEMB, D])
        self.b_ru = zeros("b_ru", [D])
        self.vars = [v for v in self.trainable_variables]

    # ---- forward ----
    def forward(self, b, training, heads, seed=None):
        site = [0]

        def drop(x, rate):
            site[0] += 1
            if not training or rate <= 0:
                return x
            return tf.nn.experimental.stateless_dropout(x, rate, seed=seed + tf.constant([0, 1], tf.int32) * site[0])

        leaky = lambda x: tf.nn.leaky_relu(x, LEAKY)  # noqa: E731
        Wa = self.W_app + tf.gather(self.C, self.app_cat)  # [M, d]
        out = lambda h: tf.matmul(h, Wa, transpose_b=True) + self.b_out  # noqa: E731  [N, M]
        Bn = tf.shape(b["ret_ids"])[0]

        w0 = drop(b["ret_w"], DROP_IN)  # [B, R]
        rows = tf.gather(Wa, b["ret_ids"])  # [B, R, d]
        x0Wa = tf.reshape(tf.matmul(w0[:, None, :], rows), [Bn, D])  # sparse x0 W_a
        x1 = leaky(x0Wa + self.ae_b1)
        res = {}
        if heads:
            x2 = leaky(tf.matmul(x1, self.ae_W2) + self.ae_b2)
            x3 = leaky(tf.matmul(x2, self.ae_W3) + self.ae_b3)
            res["ae"] = out(x3)
        table = tf.concat([Wa, tf.zeros([1, D]), self.e_mask], 0)  # [M+2, d]
        app_emb = tf.gather(table, b["seq_ids_masked"] if training else b["seq_ids"])  # [B, 2I, d]
        type_emb = tf.concat([tf.tile(self.e_install, [I, 1]), tf.tile(self.e_uninstall, [I, 1])], 0)
        valid = b["seq_valid"][:, :, None]
        ctx = (tf.gather(self.e_date, b["seq_dates"]) + type_emb) * valid
        tokens = app_emb * valid + ctx
        r0 = x1 + self.e_ret
        X = tf.concat([r0[:, None, :], tokens], 1)  # [B, T, d]
        mask_head = heads and training
        for l, p in enumerate(self.enc):
            X = self.layer(X, p, b["key_bias"], drop, mask_head or l < ENC - 1)
        rL = X[:, 0, :]
        u = tf.tanh(tf.matmul(rL, self.W_b) + self.b_b)
        res["u"] = u
        if not heads:
            return res
        if mask_head:
            mh = tf.gather(tf.reshape(X, [-1, D]), b["mask_flat"])
            res["mask"] = out(mh)
        ut = (tf.matmul(u, self.W_ud) + self.b_ud)[:, None, :]
        Y = tf.concat([ut, ut + ctx], 1)
        for p in self.dec:
            Y = self.layer(Y, p, b["key_bias"], drop, True)
        sh = tf.gather(tf.reshape(Y, [-1, D]), b["target_flat"])
        res["seq"] = out(sh)
        res["ret"] = out(leaky(tf.matmul(u, self.W_ru) + self.b_ru))
        return res

    def layer(self, X, p, key_bias, drop, all_q):
        Bn = tf.shape(X)[0]
        Tk = X.shape[1]
        Tq = Tk if all_q else 1
        dh = D // H
        X2 = tf.reshape(X, [-1, D])
        r = X[:, 0, :]

        def split(t, n):
            return tf.transpose(tf.reshape(t, [Bn, n, H, dh]), [0, 2, 1, 3])

        K = tf.reshape(tf.matmul(X2, p["Wk"]), [Bn, Tk, D]) + tf.matmul(r, p["WkRet"])[:, None, :]
        V = tf.reshape(tf.matmul(X2, p["Wv"]), [Bn, Tk, D]) + tf.matmul(r, p["WvRet"])[:, None, :]
        Xq = X2 if all_q else r
        Q = split(tf.matmul(Xq, p["Wq"]), Tq)
        scores = tf.matmul(Q, split(K, Tk), transpose_b=True) * (1 / math.sqrt(dh)) + key_bias
        probs = drop(tf.nn.softmax(scores), DROP_ATT)
        hd = tf.matmul(probs, split(V, Tk))  # [B, H, Tq, dh]
        merged = tf.reshape(tf.transpose(hd, [0, 2, 1, 3]), [-1, D])
        h1 = self.ln(Xq + tf.matmul(merged, p["Wo"]), p["ln1g"], p["ln1b"])
        f = drop(tf.nn.relu(tf.matmul(h1, p["Wff1"]) + p["bff1"]), DROP_FFN)
        f2 = tf.matmul(f, p["Wff2"]) + p["bff2"]
        return tf.reshape(self.ln(h1 + f2, p["ln2g"], p["ln2b"]), [Bn, Tq, D])

    @staticmethod
    def ln(x, g, b):
        mean = tf.reduce_mean(x, -1, keepdims=True)
        xc = x - mean
        var = tf.reduce_mean(tf.square(xc), -1, keepdims=True)
        return xc * tf.math.rsqrt(var + LN_EPS) * g + b

    def losses(self, b, seed):
        o = self.forward(b, True, True, seed)
        Bf = tf.cast(tf.shape(b["ret_ids"])[0], tf.float32)
        wce = lambda z: tf.reduce_sum(tf.nn.weighted_cross_entropy_with_logits(b["ret_target"], z, POS_W))  # noqa: E731
        retention = wce(o["ret"]) / (Bf * M)
        sequence = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(b["target_apps"], o["seq"])) / (Bf * I)
        aux = wce(o["ae"]) / (Bf * M)
        mask = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(b["mask_apps"], o["mask"])) / (Bf * MASK_COUNT)
        reg = L2 / 2 * tf.add_n([tf.reduce_sum(tf.square(v)) for v in self.vars])
        return retention + sequence + aux + mask + reg


# ---- data: the bench's users (50 retained, 25 + 25 events, dates in 52 weeks) ----
def make_users(n, seed):
    rng = np.random.default_rng(seed)
    ret = np.sort(np.stack([rng.choice(M, R, replace=False) for _ in range(n)]), 1).astype(np.int32)
    return dict(
        ret=ret,
        seq=rng.integers(0, M, (n, 2 * I), dtype=np.int32),  # installs then uninstalls
        dates=rng.integers(0, DATES, (n, 2 * I), dtype=np.int32),
    )


def make_batch(u, seed, training=True):
    """Host batch as in src/model/batch.ts (all users full: no padding)."""
    n = u["ret"].shape[0]
    rng = np.random.default_rng(seed)
    b = dict(
        ret_ids=u["ret"],
        ret_w=np.full((n, R), 1 / math.sqrt(R), np.float32),
        seq_ids=u["seq"],
        seq_dates=u["dates"],
        seq_valid=np.ones((n, 2 * I), np.float32),
        key_bias=np.zeros((n, 1, 1, T), np.float32),
    )
    if not training:
        return b
    tgt = np.zeros((n, M), np.float32)
    tgt[np.arange(n)[:, None], u["ret"]] = 1
    # 3 distinct masked positions per half per user
    pick = np.argsort(rng.random((n, 2, I)), -1)[:, :, :MASK_COUNT]  # [n, 2, 3]
    pos = (pick + np.array([0, I])[None, :, None]).reshape(n, -1)  # position within 2I
    masked = u["seq"].copy()
    masked[np.arange(n)[:, None], pos] = M + 1
    b.update(
        ret_target=tgt,
        seq_ids_masked=masked,
        target_flat=(np.arange(n)[:, None] * T + 1 + np.arange(2 * I)[None]).reshape(-1).astype(np.int32),
        target_apps=u["seq"].reshape(-1),
        mask_flat=(np.arange(n)[:, None] * T + 1 + pos).reshape(-1).astype(np.int32),
        mask_apps=u["seq"][np.arange(n)[:, None], pos].reshape(-1),
    )
    return b


EMBED_KEYS = ["ret_ids", "ret_w", "seq_ids", "seq_dates", "seq_valid", "key_bias"]
TRAIN_KEYS = EMBED_KEYS + ["ret_target", "seq_ids_masked", "target_flat", "target_apps", "mask_flat", "mask_apps"]


def build(model, xla):
    opt = tf.keras.optimizers.Adam(learning_rate=1e-4)
    opt.build(model.vars)

    @tf.function(jit_compile=xla)
    def train_step(b, seed):
        with tf.GradientTape() as tape:
            loss = model.losses(b, seed)
        grads = tape.gradient(loss, model.vars)
        grads = [tf.convert_to_tensor(g) for g in grads]  # dense, as the flat Adam of the TS trainer
        opt.apply_gradients(zip(grads, model.vars))
        return loss

    @tf.function(jit_compile=xla)
    def embed(b):
        return model.forward(b, False, False)["u"]

    return train_step, embed


MATMUL_OPS = {"MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"}


def graph_matmul_flops(concrete):
    """2 x m x n x k summed over every (Batch)MatMul of the traced graph (forward + backward)."""
    total = 0
    for op in concrete.graph.get_operations():
        if op.type not in MATMUL_OPS:
            continue
        a, bb = [x.shape.as_list() for x in op.inputs[:2]]
        c = op.outputs[0].shape.as_list()
        ta = op.get_attr("transpose_a") if op.type == "MatMul" else op.get_attr("adj_x")
        k = a[-2] if ta else a[-1]
        total += 2 * int(np.prod(c)) * k
    return total


def cpu_time():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timeit(fn, reps):
    fn()  # warm-up (trace, compile)
    fn()
    walls, cpus = [], []
    for _ in range(reps):
        c = cpu_time()
        t = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(cpu_time() - c)
    return walls, cpus


def main():
    print(f"TensorFlow {tf.__version__}, intra-op {args.threads}, inter-op {args.inter}, load {os.getloadavg()[0]:.2f}", flush=True)
    model = AETN(seed=1)
    nparams = sum(int(np.prod(v.shape)) for v in model.vars)
    fl_train, fl_inf = flops_per_user(True), flops_per_user(False)
    print(f"params {nparams}  analytic FLOPs/user: train {fl_train / 1e9:.4f} G, inference {fl_inf / 1e9:.4f} G", flush=True)
    result = dict(tf=tf.__version__, threads=args.threads, inter=args.inter, apps=M, params=nparams,
                  analytic_flops_per_user=dict(train=fl_train, inference=fl_inf), loadavg_start=os.getloadavg()[0], rows=[])

    pools = {n: make_users(n, 7 + n) for n in (16, 128, 1000)}
    # Graph FLOPs (matmuls of the traced graph, the backward pass as TF differentiates it).
    ts, em = build(model, False)
    to_t = lambda b, keys: {k: tf.constant(b[k]) for k in keys}  # noqa: E731
    sd = tf.constant([1, 2], tf.int32)
    gfl = {}
    for n in (16, 128):
        cf = ts.get_concrete_function(to_t(make_batch(pools[n], 0), TRAIN_KEYS), sd)
        gfl[f"train{n}"] = graph_matmul_flops(cf) / n
    cf = em.get_concrete_function(to_t(make_batch(pools[1000], 0, False), EMBED_KEYS))
    gfl["embed1000"] = graph_matmul_flops(cf) / 1000
    result["graph_matmul_flops_per_user"] = gfl
    print("graph matmul FLOPs/user: " + ", ".join(f"{k} {v / 1e9:.4f} G" for k, v in gfl.items()), flush=True)
    if args.flops_only:
        return

    wl = args.workloads.split(",")
    for mode in args.modes.split(","):
        xla = mode == "xla"
        ts, em = build(model, xla)
        step = [0]
        for w in wl:
            if w.startswith("train"):
                n = int(w[5:])
                reps = args.reps16 if n == 16 else args.reps128

                def fn(n=n):
                    step[0] += 1
                    b = to_t(make_batch(pools[n], step[0]), TRAIN_KEYS)
                    return float(ts(b, tf.constant([step[0], 7], tf.int32)).numpy())

                fl = fl_train
            else:
                n = int(w[5:])
                reps = args.reps_embed
                users = pools[n] if n in pools else make_users(n, 7 + n)

                def fn(users=users):
                    return em(to_t(make_batch(users, 0, False), EMBED_KEYS)).numpy()

                fl = fl_inf
            t0 = time.perf_counter()
            walls, cpus = timeit(fn, reps)
            med = statistics.median(walls)
            ups = n / med
            row = dict(workload=w, mode=mode, batch=n, reps=reps, median_s=med, min_s=min(walls), max_s=max(walls),
                       users_per_s=ups, gflop_per_s=ups * fl / 1e9, cores=sum(cpus) / sum(walls),
                       seconds_incl_warmup=time.perf_counter() - t0, load=os.getloadavg()[0])
            result["rows"].append(row)
            print(f"{mode:5} {w:10} B{n:<5} median {med * 1000:8.1f} ms (min {min(walls) * 1000:.1f}, max {max(walls) * 1000:.1f}, n={reps})"
                  f"  {ups:8.1f} users/s {row['gflop_per_s']:7.2f} GFLOP/s  cores {row['cores']:.2f}  load {row['load']:.2f}", flush=True)
    result["loadavg_end"] = os.getloadavg()[0]
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.out}")


def serve():
    """One JSON request per line on stdin, one JSON answer per line on stdout (see the docstring)."""
    print(json.dumps(dict(ready=True, tf=tf.__version__, threads=args.threads, inter=args.inter, apps=M)), flush=True)
    model = AETN(seed=1)
    fl_train, fl_inf = flops_per_user(True), flops_per_user(False)
    nparams = sum(int(np.prod(v.shape)) for v in model.vars)
    built = {}
    pools = {}
    step = [0]
    to_t = lambda b, keys: {k: tf.constant(b[k]) for k in keys}  # noqa: E731
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            mode, w, reps = req["mode"], req["workload"], int(req.get("reps", 3))
            if mode not in built:
                built[mode] = build(model, mode == "xla")
            ts, em = built[mode]
            n = int(w[5:])
            if n not in pools:
                pools[n] = make_users(n, 7 + n)
            if w.startswith("train"):
                def fn(n=n):
                    step[0] += 1
                    b = to_t(make_batch(pools[n], step[0]), TRAIN_KEYS)
                    return float(ts(b, tf.constant([step[0], 7], tf.int32)).numpy())
                fl = fl_train
            elif w.startswith("embed"):
                def fn(n=n):
                    return em(to_t(make_batch(pools[n], 0, False), EMBED_KEYS)).numpy()
                fl = fl_inf
            else:
                raise ValueError(f"unknown workload {w}")
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            walls, cpus = timeit(fn, reps)
            med = statistics.median(walls)
            ups = n / med
            print(json.dumps(dict(ok=True, workload=w, mode=mode, batch=n, reps=reps, median_s=med, min_s=min(walls),
                                  max_s=max(walls), users_per_s=ups, best_users_per_s=n / min(walls),
                                  gflop_per_s=ups * fl / 1e9, cores=sum(cpus) / sum(walls), params=nparams,
                                  seconds_incl_warmup=time.perf_counter() - t0, load_start=load0,
                                  load=os.getloadavg()[0])), flush=True)
        except Exception as e:  # noqa: BLE001
            print(json.dumps(dict(ok=False, error=f"{type(e).__name__}: {e}")), flush=True)


if __name__ == "__main__":
    serve() if args.serve else main()
