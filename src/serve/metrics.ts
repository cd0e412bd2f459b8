// Prometheus metrics per RPC on a registry the process can mount anywhere (services/serve.ts
// exposes it over HTTP; tests read it directly).
import { Counter, Histogram, Registry } from 'prom-client';

export class RpcMetrics {
  readonly requests: Counter<'method' | 'code'>;
  readonly latency: Histogram<'method'>;

  constructor(readonly registry: Registry = new Registry()) {
    this.requests = new Counter({
      name: 'aetn_grpc_requests_total',
      help: 'gRPC calls handled, by method and status code',
      labelNames: ['method', 'code'],
      registers: [registry],
    });
    this.latency = new Histogram({
      name: 'aetn_grpc_request_duration_seconds',
      help: 'gRPC call latency from request decode to the last message written',
      labelNames: ['method'],
      buckets: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: [registry],
    });
  }

  // Label-bound children, cached: rankers' calls observe these thousands of times a second.
  private readonly counters = new Map<string, { inc(): void }>();
  private readonly timers = new Map<string, { observe(v: number): void }>();

  observe(method: string, code: string, seconds: number): void {
    const key = method + '\u0000' + code;
    let c = this.counters.get(key);
    if (!c) this.counters.set(key, (c = this.requests.labels(method, code)));
    c.inc();
    let h = this.timers.get(method);
    if (!h) this.timers.set(method, (h = this.latency.labels(method)));
    h.observe(seconds);
  }
}
