// Prometheus text exposition (format 0.0.4), written here: a few counters, one histogram and
// gauges read when scraped. Small enough not to need prom-client.

type Labels = Record<string, string>;

const escapeValue = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const labelText = (labels: Labels) => {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeValue(v)}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
};

/** A counter by label values. */
export class Counter {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    const entry = this.values.get(key);
    if (entry) entry.value += by;
    else this.values.set(key, { labels, value: by });
  }

  /** The value for these labels (0 when never counted). */
  get(labels: Labels = {}): number {
    return this.values.get(labelText(labels))?.value ?? 0;
  }

  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n`;
    for (const { labels, value } of this.values.values()) out += `${this.name}${labelText(labels)} ${value}\n`;
    return out;
  }
}

/** A histogram of seconds by label values, with cumulative buckets. */
export class Histogram {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {}

  observe(labels: Labels, value: number): void {
    const key = labelText(labels);
    let s = this.series.get(key);
    if (!s) {
      s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]) s.counts[i]++;
    s.sum += value;
    s.count++;
  }

  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n`;
    for (const s of this.series.values()) {
      for (const [i, b] of this.buckets.entries())
        out += `${this.name}_bucket${labelText({ ...s.labels, le: String(b) })} ${s.counts[i]}\n`;
      out += `${this.name}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${s.count}\n`;
      out += `${this.name}_sum${labelText(s.labels)} ${s.sum}\n${this.name}_count${labelText(s.labels)} ${s.count}\n`;
    }
    return out;
  }
}

/** A gauge read when scraped: one value per label set. */
export class Gauge {
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly read: () => Array<[Labels, number]>,
    private readonly type: 'gauge' | 'counter' = 'gauge',
  ) {}

  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} ${this.type}\n`;
    for (const [labels, value] of this.read()) out += `${this.name}${labelText(labels)} ${value}\n`;
    return out;
  }
}

/** What the pool gauges read. */
export interface PoolView {
  totalCount: number;
  idleCount: number;
  waitingCount: number;
  options: { max?: number };
}

/** The metrics of one server. */
export class ServeMetrics {
  readonly requests = new Counter('invoices_http_requests_total', 'HTTP requests answered, by route, method and status.');
  readonly latency = new Histogram(
    'invoices_http_request_duration_seconds',
    'Time from receiving a request to answering it, by route.',
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  );
  readonly errors = new Counter('invoices_http_errors_total', 'Error answers by their code (the "code" of the JSON error).');
  readonly cache = new Counter('invoices_cache_lookups_total', 'Invoices looked up through the Redis cache: hit or miss (one per id).');
  inFlight = 0;
  private readonly gauges: Gauge[];

  constructor(pool: PoolView, extra: { cacheActive(): boolean; shed(): number; replicaLag?(): number | null | undefined }) {
    this.gauges = [
      new Gauge('invoices_http_requests_in_flight', 'Requests received and not yet answered.', () => [[{}, this.inFlight]]),
      new Gauge('invoices_db_pool_connections', 'Connections of the read pool: in use or idle.', () => [
        [{ state: 'in_use' }, pool.totalCount - pool.idleCount],
        [{ state: 'idle' }, pool.idleCount],
      ]),
      new Gauge('invoices_db_pool_waiting', 'Requests waiting for a connection of the read pool.', () => [[{}, pool.waitingCount]]),
      new Gauge('invoices_db_pool_max', 'Size of the read pool (--pool-size).', () => [[{}, pool.options.max ?? 10]]),
      new Gauge(
        'invoices_db_pool_shed_total',
        'Requests shed with 503 because the queue for connections was full (--max-queue).',
        () => [[{}, extra.shed()]],
        'counter',
      ),
      new Gauge('invoices_cache_active', '1 while lookups go through Redis, 0 without a cache or while it is unavailable.', () => [
        [{}, extra.cacheActive() ? 1 : 0],
      ]),
      new Gauge(
        'invoices_replica_lag_seconds',
        'How far behind the primary the standby the reads go to is, sampled every 5 s (none when reads go to the primary).',
        () => {
          const lag = extra.replicaLag?.();
          return lag === undefined || lag === null ? [] : [[{}, lag]];
        },
      ),
      new Gauge('process_resident_memory_bytes', 'Resident memory of the server process.', () => [[{}, process.memoryUsage.rss()]]),
    ];
  }

  /** Everything, in Prometheus's text format. */
  render(): string {
    return [this.requests, this.latency, this.errors, this.cache, ...this.gauges].map((m) => m.render()).join('');
  }
}
