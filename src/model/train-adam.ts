// Adam over one flat parameter vector. Kept in plain JS on the main thread (not tf.train.adam) so
// that the replicas in worker threads only ever see weights, the optimizer state is two arrays that
// a resume checkpoint stores exactly, and the update is identical on every backend.
export class FlatAdam {
  readonly m: Float32Array;
  readonly v: Float32Array;
  step = 0;

  constructor(
    readonly size: number,
    readonly beta1 = 0.9,
    readonly beta2 = 0.999,
    readonly epsilon = 1e-8,
  ) {
    this.m = new Float32Array(size);
    this.v = new Float32Array(size);
  }

  /** One Adam step in place: w -= lr * m_hat / (sqrt(v_hat) + eps). */
  apply(weights: Float32Array, grad: Float32Array, lr: number): void {
    this.step++;
    const { beta1: b1, beta2: b2, epsilon: eps, m, v } = this;
    const c1 = 1 - b1 ** this.step;
    const c2 = 1 - b2 ** this.step;
    const stepSize = (lr * Math.sqrt(c2)) / c1;
    const epsHat = eps * Math.sqrt(c2);
    for (let i = 0; i < weights.length; i++) {
      const g = grad[i]!;
      const mi = b1 * m[i]! + (1 - b1) * g;
      const vi = b2 * v[i]! + (1 - b2) * g * g;
      m[i] = mi;
      v[i] = vi;
      weights[i]! -= (stepSize * mi) / (Math.sqrt(vi) + epsHat);
    }
  }

  restore(step: number, m: Float32Array, v: Float32Array): void {
    if (m.length !== this.size || v.length !== this.size) throw new Error('optimizer state does not match the model size');
    this.step = step;
    this.m.set(m);
    this.v.set(v);
  }
}
