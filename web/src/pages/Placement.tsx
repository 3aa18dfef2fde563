// Inference placement: how each version of a model behaves on each class of devices and on
// the server, to choose edge, server or hybrid from measurements (docs/placement.md).

import { useState } from 'preact/hooks';
import type { Schemas } from '../api/client';
import { Card, Empty, Loaded, Meter, PageHeader } from '../components/ui';
import { bytes, count, ms, percent } from '../lib/format';
import { usePoll } from '../lib/poll';
import { href, replaceRoute } from '../lib/router';
import { useSession } from '../lib/session';

export function Placement(props: { params: URLSearchParams }) {
  const { client } = useSession();
  const models = usePoll('placement-models', (signal) => client.get('/api/v1/models', { signal }));
  const chosen = props.params.get('model') ?? models.data?.models[0]?.name ?? '';
  const groupBy = props.params.get('group_by') ?? 'hardware';
  const [draftGroup, setDraftGroup] = useState(groupBy === 'hardware' ? '' : groupBy);
  const go = (next: { model?: string; group_by?: string }) =>
    replaceRoute(
      href('placement', undefined, {
        model: next.model ?? chosen,
        group_by: (next.group_by ?? groupBy) === 'hardware' ? '' : (next.group_by ?? groupBy),
      }),
    );

  return (
    <>
      <PageHeader
        title="Inference placement"
        subtitle="Edge or server? Latency, errors, memory and escalations as devices and the server measured them."
      />
      <Loaded data={models.data} error={models.error} what="models">
        {(m) =>
          m.models.length === 0 ? (
            <Card>
              <Empty title="No models yet.">
                Publish a model and deploy it; placement compares where it runs once devices report.
              </Empty>
            </Card>
          ) : (
            <>
              <form
                class="filters"
                onSubmit={(e) => {
                  e.preventDefault();
                  go({ group_by: draftGroup.trim() || 'hardware' });
                }}
              >
                <label class="field field-inline">
                  <span>Model</span>
                  <select
                    name="model"
                    value={chosen}
                    onChange={(e) => go({ model: (e.target as HTMLSelectElement).value })}
                  >
                    {m.models.map((x) => (
                      <option key={x.name} value={x.name}>
                        {x.name}
                      </option>
                    ))}
                  </select>
                </label>
                <label class="field field-inline">
                  <span>Group devices by</span>
                  <input
                    type="text"
                    name="group_by"
                    placeholder="hardware, or a label key such as class"
                    value={draftGroup}
                    onInput={(e) => setDraftGroup((e.target as HTMLInputElement).value)}
                  />
                </label>
                <button type="submit" class="btn">
                  Group
                </button>
              </form>
              {chosen && <Report model={chosen} groupBy={groupBy} />}
            </>
          )
        }
      </Loaded>
    </>
  );
}

function Report(props: { model: string; groupBy: string }) {
  const { client } = useSession();
  const report = usePoll(`placement|${props.model}|${props.groupBy}`, (signal) =>
    client.get('/api/v1/placement', {
      query: { model: props.model, group_by: props.groupBy },
      signal,
    }),
  );
  return (
    <Loaded data={report.data} error={report.error} what="the placement report">
      {(r) => {
        const maxP95 = Math.max(
          1e-9,
          ...r.edge.map((e) => e.latency_ms.p95),
          ...r.server.map((s) => s.latency_ms?.p95 ?? 0),
        );
        return (
          <>
            <Card
              title={`On devices, grouped by ${r.group_by}`}
              aside="each device’s latest health window"
              testid="placement-edge"
            >
              {r.edge.length === 0 ? (
                <Empty title={`No device has reported ${r.model} yet.`}>
                  Edge rows appear once devices run the model and send a health window. Check{' '}
                  <a href={href('devices')}>Devices</a> for what they run.
                </Empty>
              ) : (
                <EdgeTable rows={r.edge} maxP95={maxP95} />
              )}
            </Card>
            <Card title="On the server" aside="since the server started" testid="placement-server">
              {r.server.length === 0 ? (
                <Empty title={`The server has not served ${r.model} yet.`}>
                  Server rows count requests to <code>/v2/models/{r.model}/infer</code> on this
                  server, including hybrid escalations from devices.
                </Empty>
              ) : (
                <table class="table">
                  <thead>
                    <tr>
                      <th>Version</th>
                      <th class="num">Inferences</th>
                      <th class="num">Error rate</th>
                      <th class="num">p50</th>
                      <th class="num">p95</th>
                      <th class="num">p99</th>
                      <th class="bar-col">p95 vs. slowest</th>
                    </tr>
                  </thead>
                  <tbody>
                    {r.server.map((s) => (
                      <tr key={s.version}>
                        <td>
                          <code>{s.version}</code>
                        </td>
                        <td class="num">{count(s.inferences)}</td>
                        <td class="num">{percent(s.error_rate, 2)}</td>
                        <td class="num">{ms(s.latency_ms?.p50)}</td>
                        <td class="num">{ms(s.latency_ms?.p95)}</td>
                        <td class="num">{ms(s.latency_ms?.p99)}</td>
                        <td class="bar-col">
                          <Meter value={s.latency_ms?.p95 ?? 0} max={maxP95} tone="good" />
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              )}
            </Card>
            <p class="muted small">
              Server latency is the model run alone, without the network; edge latency is measured
              on the device around the model run. See docs/placement.md for how to read this.
            </p>
          </>
        );
      }}
    </Loaded>
  );
}

function EdgeTable(props: { rows: Schemas['EdgePlacement'][]; maxP95: number }) {
  const hybrid = props.rows.some((r) => r.escalation_rate > 0);
  return (
    <table class="table">
      <thead>
        <tr>
          <th>Version</th>
          <th>Class</th>
          <th class="num">Devices</th>
          <th class="num">Inferences</th>
          <th class="num">Error rate</th>
          <th class="num">p50</th>
          <th class="num">p95</th>
          <th class="num">p99</th>
          <th class="bar-col">p95 vs. slowest</th>
          <th class="num">Memory (mean / max)</th>
          {hybrid && <th class="num">Escalated</th>}
          {hybrid && <th class="num">Escalation p95</th>}
        </tr>
      </thead>
      <tbody>
        {props.rows.map((e) => (
          <tr key={`${e.version}|${e.class}`}>
            <td>
              <code>{e.version}</code>
            </td>
            <td>{e.class}</td>
            <td class="num">{e.devices}</td>
            <td class="num">{count(e.inferences)}</td>
            <td class="num">{percent(e.error_rate, 2)}</td>
            <td class="num">{ms(e.latency_ms.p50)}</td>
            <td class="num">{ms(e.latency_ms.p95)}</td>
            <td class="num">{ms(e.latency_ms.p99)}</td>
            <td class="bar-col">
              <Meter value={e.latency_ms.p95} max={props.maxP95} />
            </td>
            <td class="num">
              {bytes(e.memory_rss_bytes_mean)} / {bytes(e.memory_rss_bytes_max)}
            </td>
            {hybrid && (
              <td
                class="num"
                title={`${e.escalation_fallbacks} answered locally because the server did not`}
              >
                {percent(e.escalation_rate)}
              </td>
            )}
            {hybrid && <td class="num">{ms(e.escalation_latency_ms?.p95)}</td>}
          </tr>
        ))}
      </tbody>
    </table>
  );
}
