// Devices: filter by labels and status, what each runs and when it was last heard from, and
// latency and error charts over time, for one device and for the filtered cohort.

import { useMemo, useState } from 'preact/hooks';
import type { Schemas } from '../api/client';
import { align, PALETTE, TimeChart, type Series } from '../components/TimeChart';
import { Card, Empty, Labels, Loaded, PageHeader, Stat, StateBadge } from '../components/ui';
import { ago, bytes, count, ms, percent, timestamp } from '../lib/format';
import { healthOf, running, type Device } from '../lib/fleet';
import { usePoll } from '../lib/poll';
import { href, replaceRoute } from '../lib/router';
import { useSession } from '../lib/session';

export function Devices(props: { id?: string; params: URLSearchParams }) {
  if (props.id) return <DeviceDetail id={props.id} />;
  return <DeviceList params={props.params} />;
}

const STATUSES = ['', 'active', 'pending', 'revoked'] as const;

function DeviceList(props: { params: URLSearchParams }) {
  const { client } = useSession();
  const selector = props.params.get('selector') ?? '';
  const status = props.params.get('status') ?? '';
  const [draft, setDraft] = useState(selector);
  const query = { selector: selector || undefined, status: status || undefined };
  const devices = usePoll(`devices|${selector}|${status}`, (signal) =>
    client.get('/api/v1/devices', { query, signal }),
  );

  const apply = (next: { selector?: string; status?: string }) =>
    replaceRoute(
      href('devices', undefined, {
        selector: next.selector ?? selector,
        status: next.status ?? status,
      }),
    );

  return (
    <>
      <PageHeader title="Devices" subtitle="Enrolled devices, what they run and how it behaves." />
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          apply({ selector: draft.trim() });
        }}
      >
        <label class="field field-inline">
          <span>Labels</span>
          <input
            type="search"
            name="selector"
            placeholder="site=plant-7,class=pi"
            value={draft}
            onInput={(e) => setDraft((e.target as HTMLInputElement).value)}
          />
        </label>
        <label class="field field-inline">
          <span>Status</span>
          <select
            name="status"
            value={status}
            onChange={(e) => apply({ status: (e.target as HTMLSelectElement).value })}
          >
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s || 'any'}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" class="btn">
          Filter
        </button>
        {(selector || status) && (
          <button
            type="button"
            class="btn btn-link"
            onClick={() => {
              setDraft('');
              apply({ selector: '', status: '' });
            }}
          >
            Clear
          </button>
        )}
      </form>
      <Card
        title="Devices"
        aside={devices.data ? `${devices.data.devices.length} shown` : undefined}
        testid="device-list"
      >
        <Loaded data={devices.data} error={devices.error} what="devices">
          {(d) =>
            d.devices.length === 0 ? (
              selector || status ? (
                <Empty title="No device matches these filters.">
                  Labels are <code>key=value</code> terms separated by commas, all of which must
                  match. Clear the filters to see every device.
                </Empty>
              ) : (
                <Empty title="No devices have enrolled yet.">
                  Create an enrollment token (<code>flotilla enroll-tokens create</code>) and start{' '}
                  <code>flotilla-agent</code> with it on a device (docs/agent.md).
                </Empty>
              )
            ) : (
              <DeviceTable devices={d.devices} />
            )
          }
        </Loaded>
      </Card>
      <CohortCharts selector={selector} status={status} />
    </>
  );
}

function RunningCell(props: { device: Device }) {
  const slots = running(props.device);
  if (!slots.length) return <span class="muted">nothing reported</span>;
  return (
    <span class="running">
      {slots.map((s) => (
        <span key={s.model} class="running-slot">
          <code>
            {s.model}@{s.active ?? '—'}
          </code>
          {s.state !== 'active' && (
            <span title={s.reason ?? undefined}>
              {' '}
              <StateBadge state={s.state} />{' '}
              {s.target !== s.active ? <code class="muted">→ {s.target}</code> : null}
            </span>
          )}
        </span>
      ))}
    </span>
  );
}

function DeviceTable(props: { devices: Device[] }) {
  return (
    <table class="table">
      <thead>
        <tr>
          <th>Device</th>
          <th>Status</th>
          <th>Labels</th>
          <th>Running</th>
          <th>Last seen</th>
          <th class="num">p95 latency</th>
          <th class="num">Errors</th>
        </tr>
      </thead>
      <tbody>
        {props.devices.map((d) => {
          const h = healthOf(d);
          const inf = h?.models.reduce((s, m) => s + m.inference_count, 0) ?? 0;
          const err = h?.models.reduce((s, m) => s + m.error_count, 0) ?? 0;
          const p95 = h?.models.length ? Math.max(...h.models.map((m) => m.latency_ms.p95)) : null;
          return (
            <tr key={d.id} data-testid="device-row">
              <td>
                <a href={href('devices', d.id)}>
                  <strong>{d.name}</strong>
                </a>
              </td>
              <td>
                <StateBadge state={d.status} />
              </td>
              <td>
                <Labels labels={d.labels} />
              </td>
              <td>
                <RunningCell device={d} />
              </td>
              <td title={timestamp(d.last_seen_at)}>{ago(d.last_seen_at)}</td>
              <td class="num">{ms(p95)}</td>
              <td class="num">{h ? percent(inf ? err / inf : 0) : '—'}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

/** Latency and error-rate series per version from cohort points. */
function cohortSeries(points: Schemas['CohortHealthPoint'][]) {
  const key = (p: Schemas['CohortHealthPoint']) => `${p.model}@${p.version}`;
  const latency = align(
    points,
    (p) => p.start,
    key,
    (p) => p.latency_ms?.p95 ?? null,
  );
  const errors = align(
    points,
    (p) => p.start,
    key,
    (p) => (p.inference_count ? p.error_rate * 100 : null),
  );
  const series = (values: (number | null)[][], keys: string[]): Series[] =>
    keys.map((k, i) => ({
      label: k,
      values: values[i] ?? [],
      color: PALETTE[i % PALETTE.length]!,
    }));
  return {
    latency: { x: latency.x, series: series(latency.values, latency.keys) },
    errors: { x: errors.x, series: series(errors.values, errors.keys) },
  };
}

const RANGES = [
  { label: 'last 15 min', since: 900, bucket: 15 },
  { label: 'last hour', since: 3600, bucket: 60 },
  { label: 'last 24 h', since: 86400, bucket: 900 },
];

function CohortCharts(props: { selector: string; status: string }) {
  const { client } = useSession();
  const [range, setRange] = useState(0);
  const r = RANGES[range] ?? RANGES[0]!;
  const cohort = usePoll(`cohort|${props.selector}|${props.status}|${range}`, (signal) =>
    client.get('/api/v1/cohort-health', {
      query: {
        selector: props.selector || undefined,
        status: props.status || undefined,
        since_secs: r.since,
        bucket_secs: r.bucket,
      },
      signal,
    }),
  );
  const charts = useMemo(() => cohort.data && cohortSeries(cohort.data.points), [cohort.data]);
  // The whole chosen range, ending with the newest bucket, so sparse data keeps its place.
  const last = charts ? Math.max(...charts.latency.x, ...charts.errors.x) : 0;
  const xRange: [number, number] | undefined = charts
    ? [
        Math.max(last, Date.now() / 1000 - r.bucket) - r.since,
        Math.max(last, Date.now() / 1000 - r.bucket),
      ]
    : undefined;
  const who = props.selector ? `devices matching ${props.selector}` : 'all devices';
  return (
    <Card
      title={`Cohort health: ${who}${props.status ? ` (${props.status})` : ''}`}
      aside={
        <select
          aria-label="Time range"
          value={range}
          onChange={(e) => setRange(Number((e.target as HTMLSelectElement).value))}
        >
          {RANGES.map((x, i) => (
            <option key={x.label} value={i}>
              {x.label}
            </option>
          ))}
        </select>
      }
      testid="cohort-health"
    >
      <Loaded data={cohort.data} error={cohort.error} what="cohort health">
        {(c) =>
          c.points.length === 0 || !charts ? (
            <Empty title={`No health reports from ${who} in the ${r.label}.`}>
              Devices report latency and errors with each poll once they run a model. Widen the time
              range or the filter.
            </Empty>
          ) : (
            <>
              <p class="muted small">
                Per version, summed over {c.devices} device{c.devices === 1 ? '' : 's'} in{' '}
                {r.bucket}-second buckets; latency is each bucket’s inference-weighted p95.
                {c.truncated && ' The oldest buckets may be incomplete (too many reports).'}
              </p>
              <div class="grid-2">
                <div>
                  <h3>p95 latency</h3>
                  <TimeChart
                    x={charts.latency.x}
                    series={charts.latency.series}
                    unit="ms"
                    xRange={xRange}
                    testid="cohort-latency-chart"
                  />
                </div>
                <div>
                  <h3>Error rate</h3>
                  <TimeChart
                    x={charts.errors.x}
                    series={charts.errors.series}
                    xRange={xRange}
                    unit="%"
                    format={(v) => `${+v.toFixed(2)}%`}
                    testid="cohort-error-chart"
                  />
                </div>
              </div>
            </>
          )
        }
      </Loaded>
    </Card>
  );
}

function DeviceDetail(props: { id: string }) {
  const { client } = useSession();
  const device = usePoll(`device-${props.id}`, (signal) =>
    client.get('/api/v1/devices/{id}', { path: { id: props.id }, signal }),
  );
  return (
    <Loaded data={device.data} error={device.error} what="the device">
      {(d) => (
        <>
          <PageHeader
            title={d.name}
            subtitle={
              <>
                <StateBadge state={d.status} /> <span class="muted">id</span> <code>{d.id}</code>
              </>
            }
            back={{ href: href('devices'), label: 'Devices' }}
          />
          <DeviceFacts device={d} />
          <DeviceCharts id={d.id} />
        </>
      )}
    </Loaded>
  );
}

function DeviceFacts(props: { device: Device }) {
  const d = props.device;
  const hw = (d.hardware ?? {}) as Record<string, unknown>;
  const h = healthOf(d);
  const desired = Object.entries(d.desired ?? {});
  return (
    <>
      <div class="stats">
        <Stat label="Last seen" value={ago(d.last_seen_at)} hint={timestamp(d.last_seen_at)} />
        <Stat
          label="Desired state"
          value={d.applied_sequence === d.desired_sequence ? 'applied' : 'behind'}
          hint={`applied #${d.applied_sequence} of #${d.desired_sequence}`}
        />
        <Stat
          label="Memory (agent)"
          value={bytes(h?.memory_rss_bytes ?? null)}
          hint="last window"
        />
        <Stat
          label="Hardware"
          value={String(hw['arch'] ?? '—')}
          hint={`${hw['cpu_cores'] ?? '?'} cores, ${hw['memory_mib'] ? bytes(Number(hw['memory_mib']) * 1024 * 1024) : '?'}`}
        />
      </div>
      <div class="grid-2">
        <Card title="Models">
          {running(d).length === 0 && desired.length === 0 ? (
            <Empty title="Nothing deployed to this device.">
              Deploy a version to a selector matching its labels, or start a rollout.
            </Empty>
          ) : (
            <table class="table compact">
              <thead>
                <tr>
                  <th>Model</th>
                  <th>Should run</th>
                  <th>Runs</th>
                  <th>State</th>
                </tr>
              </thead>
              <tbody>
                {[...new Set([...desired.map(([m]) => m), ...running(d).map((r) => r.model)])].map(
                  (m) => {
                    const r = running(d).find((x) => x.model === m);
                    return (
                      <tr key={m}>
                        <td>{m}</td>
                        <td>
                          <code>{d.desired?.[m] ?? '—'}</code>
                        </td>
                        <td>
                          <code>{r?.active ?? '—'}</code>
                        </td>
                        <td title={r?.reason ?? undefined}>
                          {r ? (
                            <StateBadge state={r.state} />
                          ) : (
                            <span class="muted">not reported</span>
                          )}
                          {r?.reason && <div class="muted small">{r.reason}</div>}
                        </td>
                      </tr>
                    );
                  },
                )}
              </tbody>
            </table>
          )}
        </Card>
        <Card title="Labels and agent">
          <dl class="facts">
            <div>
              <dt>Labels</dt>
              <dd>
                <Labels labels={d.labels} />
              </dd>
            </div>
            <div>
              <dt>Agent</dt>
              <dd>{d.agent_version || '—'}</dd>
            </div>
            <div>
              <dt>Enrolled</dt>
              <dd title={timestamp(d.enrolled_at)}>{ago(d.enrolled_at)}</dd>
            </div>
            {Array.isArray(hw['accelerators']) && (hw['accelerators'] as string[]).length > 0 && (
              <div>
                <dt>Accelerators</dt>
                <dd>{(hw['accelerators'] as string[]).join(', ')}</dd>
              </div>
            )}
          </dl>
        </Card>
      </div>
    </>
  );
}

function DeviceCharts(props: { id: string }) {
  const { client } = useSession();
  const history = usePoll(`device-health-${props.id}`, (signal) =>
    client.get('/api/v1/devices/{id}/health', {
      path: { id: props.id },
      query: { limit: 500 },
      signal,
    }),
  );
  const charts = useMemo(() => {
    const points = history.data?.points;
    if (!points?.length) return null;
    // When the window ended by the device's clock: the moment it measured.
    const t = (p: Schemas['HealthPoint']) => p.end;
    const key = (p: Schemas['HealthPoint']) => `${p.model}@${p.version}`;
    const x = [...new Set(points.map(t))].sort((a, b) => a - b);
    const column = x.map((v, i) => [v, i] as const);
    const at = new Map(column);
    const keys = [...new Set(points.map(key))].sort();
    const values = (k: string, y: (p: Schemas['HealthPoint']) => number | null) => {
      const out = x.map((): number | null => null);
      for (const p of points) {
        const i = at.get(t(p));
        if (key(p) === k && i !== undefined) out[i] = y(p);
      }
      return out;
    };
    const color = (i: number) => PALETTE[i % PALETTE.length]!;
    const latency: Series[] = keys.flatMap((k, i) => [
      {
        label: `${k} p50`,
        values: values(k, (p) => p.latency_ms.p50),
        color: color(i),
        dash: true,
      },
      { label: `${k} p95`, values: values(k, (p) => p.latency_ms.p95), color: color(i) },
    ]);
    const errors: Series[] = keys.map((k, i) => ({
      label: k,
      values: values(k, (p) =>
        p.inference_count ? (100 * p.error_count) / p.inference_count : null,
      ),
      color: color(i),
    }));
    const volume: Series[] = keys.map((k, i) => ({
      label: k,
      values: values(k, (p) => p.inference_count),
      color: color(i),
    }));
    const total = points.reduce((s, p) => s + p.inference_count, 0);
    const failed = points.reduce((s, p) => s + p.error_count, 0);
    return { x, latency, errors, volume, total, failed };
  }, [history.data]);

  return (
    <Card
      title="Health over time"
      aside="from the device’s reports, by its clock"
      testid="device-health"
    >
      <Loaded data={history.data} error={history.error} what="the device’s reports">
        {() =>
          !charts ? (
            <Empty title="This device has not reported any health yet.">
              Agents send a health window with each report once they serve a model. Check the
              device’s agent log if it stays empty.
            </Empty>
          ) : (
            <>
              <p class="muted small">
                {count(charts.total)} inferences, {count(charts.failed)} failed, over{' '}
                {history.data?.points.length} reported windows.
              </p>
              <div class="grid-2">
                <div>
                  <h3>Latency (p50 dashed, p95 solid)</h3>
                  <TimeChart
                    x={charts.x}
                    series={charts.latency}
                    unit="ms"
                    testid="device-latency-chart"
                  />
                </div>
                <div>
                  <h3>Error rate</h3>
                  <TimeChart
                    x={charts.x}
                    series={charts.errors}
                    unit="%"
                    format={(v) => `${+v.toFixed(2)}%`}
                    testid="device-error-chart"
                  />
                </div>
              </div>
              <h3>Inferences per window</h3>
              <TimeChart
                x={charts.x}
                series={charts.volume}
                unit=""
                format={(v) => count(v)}
                height={140}
              />
              <p class="muted small">
                Hover a chart to read values; click a legend entry to hide its series.
              </p>
            </>
          )
        }
      </Loaded>
    </Card>
  );
}
