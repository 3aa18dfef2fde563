// Rollouts: staged, health-gated moves of a model version across devices. Each stage's
// progress, the gates against their thresholds, the history of transitions with reasons, and
// the operator's actions.

import { useState } from 'preact/hooks';
import type { Schemas } from '../api/client';
import {
  Badge,
  Card,
  ConfirmDialog,
  Empty,
  Loaded,
  PageHeader,
  StackedBar,
  StateBadge,
  Stat,
} from '../components/ui';
import { ago, duration, percent, timestamp } from '../lib/format';
import { usePoll } from '../lib/poll';
import { can } from '../lib/roles';
import { href, replaceRoute } from '../lib/router';
import { useSession } from '../lib/session';

type Rollout = Schemas['RolloutInfo'];
type Stage = Schemas['Stage'];
type Action = 'pause' | 'resume' | 'approve' | 'abort' | 'promote';

const NO_DEVICES: Schemas['DeviceCounts'] = {
  matching: 0,
  in_stage: 0,
  active: 0,
  pending: 0,
  failed: 0,
  reporting: 0,
};

const CREATE_HINT = (
  <>
    Start one with the CLI, e.g.{' '}
    <code>
      flotilla rollout create fraud@1.2.0 --selector site=plant-7 --stages 10%,50%,100% --bake 10m
      --max-error-rate 0.01
    </code>{' '}
    (docs/rollouts.md).
  </>
);

export function Rollouts(props: { id?: string; params?: URLSearchParams }) {
  if (props.id) return <RolloutDetail id={props.id} />;
  return <RolloutList params={props.params ?? new URLSearchParams()} />;
}

/** "stage 2 of 3". */
function stageText(r: Rollout): string {
  if (r.state === 'completed') return `all ${r.policy.stages.length} stages`;
  return `stage ${r.stage + 1} of ${r.policy.stages.length}`;
}

/** "10%" or "25 devices": a stage's cumulative share. */
function shareText(s: Stage): string {
  if (s.percent !== undefined && s.percent !== null) return `${+s.percent.toFixed(2)}%`;
  if (s.devices !== undefined && s.devices !== null)
    return `${s.devices} device${s.devices === 1 ? '' : 's'}`;
  return '—';
}

/** "from 1.0.0, 1.1.0 · " when known (the list leaves previous versions out). */
function fromVersions(r: Rollout): string {
  const versions = Object.keys(r.previous_versions ?? {});
  return versions.length ? `from ${versions.join(', ')} · ` : '';
}

/** A progress bar over the stages: finished stages full, the current one half. */
function StageProgress(props: { rollout: Rollout }) {
  const r = props.rollout;
  const n = r.policy.stages.length;
  const done = r.state === 'completed' ? n : r.stage;
  return (
    <span class="stage-progress" title={stageText(r)}>
      {r.policy.stages.map((_, i) => (
        <span
          key={i}
          class={`stage-tick ${i < done ? 'done' : i === r.stage && r.state !== 'completed' ? `current state-${r.state}` : ''}`}
        />
      ))}
    </span>
  );
}

const STATE_FILTERS: [string, string][] = [
  ['', 'all'],
  ['open', 'in progress'],
  ['completed', 'completed'],
  ['rolled_back', 'rolled back'],
  ['aborted', 'aborted'],
];

function RolloutList(props: { params: URLSearchParams }) {
  const { client } = useSession();
  const state = props.params.get('state') ?? '';
  const list = usePoll(`rollouts|${state}`, (signal) =>
    client.get('/api/v1/rollouts', { query: { state: state || undefined }, signal }),
  );
  return (
    <>
      <PageHeader title="Rollouts" subtitle="Staged, health-gated moves to a new model version." />
      <div class="filters">
        <label class="field field-inline">
          <span>State</span>
          <select
            value={state}
            onChange={(e) =>
              replaceRoute(
                href('rollouts', undefined, { state: (e.target as HTMLSelectElement).value }),
              )
            }
          >
            {STATE_FILTERS.map(([v, label]) => (
              <option key={v} value={v}>
                {label}
              </option>
            ))}
          </select>
        </label>
      </div>
      <Card testid="rollout-list">
        <Loaded data={list.data} error={list.error} what="rollouts">
          {(l) =>
            l.rollouts.length === 0 ? (
              <Empty title={state ? 'No rollout in this state.' : 'No rollouts yet.'}>
                {CREATE_HINT}
              </Empty>
            ) : (
              <table class="table">
                <thead>
                  <tr>
                    <th>Rollout</th>
                    <th>Devices</th>
                    <th>State</th>
                    <th>Progress</th>
                    <th>Last change</th>
                    <th>Started</th>
                  </tr>
                </thead>
                <tbody>
                  {l.rollouts.map((r) => (
                    <tr key={r.id} data-testid="rollout-row">
                      <td>
                        <a href={href('rollouts', r.id)}>
                          <strong>
                            {r.model}@{r.version}
                          </strong>
                        </a>
                      </td>
                      <td>
                        {r.selector ? (
                          <code>{r.selector}</code>
                        ) : (
                          <span class="muted">every device</span>
                        )}
                      </td>
                      <td>
                        <StateBadge state={r.state} />
                      </td>
                      <td>
                        <StageProgress rollout={r} />
                        <div class="muted small">{stageText(r)}</div>
                      </td>
                      <td class="reason-cell">
                        <div>{r.reason}</div>
                        <div class="muted small" title={timestamp(r.updated_at)}>
                          {ago(r.updated_at)}
                        </div>
                      </td>
                      <td title={timestamp(r.created_at)}>
                        {ago(r.created_at)}
                        <div class="muted small">by {r.created_by}</div>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )
          }
        </Loaded>
      </Card>
    </>
  );
}

/** The Overview's list of rollouts in progress. */
export function ActiveRollouts() {
  const { client } = useSession();
  const list = usePoll('rollouts-open', (signal) =>
    client.get('/api/v1/rollouts', { query: { state: 'open' }, signal }),
  );
  return (
    <Loaded data={list.data} error={list.error} what="rollouts">
      {(l) =>
        l.rollouts.length === 0 ? (
          <Empty title="No rollout is in progress.">{CREATE_HINT}</Empty>
        ) : (
          <ul class="rollout-cards">
            {l.rollouts.map((r) => (
              <li key={r.id}>
                <div class="rollout-card-head">
                  <a href={href('rollouts', r.id)}>
                    <strong>
                      {r.model}@{r.version}
                    </strong>
                  </a>{' '}
                  <StateBadge state={r.state} />
                </div>
                <div class="muted small">
                  {r.selector ? <code>{r.selector}</code> : 'every device'} · {stageText(r)}
                </div>
                <StageProgress rollout={r} />
                <div class="small">{r.reason}</div>
              </li>
            ))}
          </ul>
        )
      }
    </Loaded>
  );
}

const ACTIONS: Record<
  Action,
  { label: string; title: string; body: string; danger?: boolean; when: (r: Rollout) => boolean }
> = {
  approve: {
    label: 'Approve stage',
    title: 'Approve this stage?',
    body: 'Its gates hold; the rollout moves on to the next stage.',
    when: (r) => r.state === 'waiting_approval',
  },
  pause: {
    label: 'Pause',
    title: 'Pause this rollout?',
    body: 'It stops where it is: devices keep what they run, no stage advances until you resume.',
    when: (r) => r.state === 'running' || r.state === 'waiting_approval',
  },
  resume: {
    label: 'Resume',
    title: 'Resume this rollout?',
    body: 'The current stage goes on baking and advances once its gates hold.',
    when: (r) => r.state === 'paused',
  },
  promote: {
    label: 'Promote',
    title: 'Promote to every device now?',
    body: 'Skips the remaining stages: the target version becomes the deployment of every device of the selector at once.',
    when: (r) => r.state === 'running' || r.state === 'waiting_approval' || r.state === 'paused',
  },
  abort: {
    label: 'Abort',
    title: 'Abort this rollout?',
    body: 'Every device of the rollout goes back to the version it ran before.',
    danger: true,
    when: (r) => r.state === 'running' || r.state === 'waiting_approval' || r.state === 'paused',
  },
};

function RolloutDetail(props: { id: string }) {
  const { client, role } = useSession();
  const rollout = usePoll(`rollout-${props.id}`, (signal) =>
    client.get('/api/v1/rollouts/{id}', { path: { id: props.id }, signal }),
  );
  const [acting, setActing] = useState<Action | null>(null);
  const mayOperate = can(role, 'operate');

  return (
    <Loaded data={rollout.data} error={rollout.error} what="the rollout">
      {(r) => (
        <>
          <PageHeader
            title={`${r.model}@${r.version}`}
            back={{ href: href('rollouts'), label: 'Rollouts' }}
            subtitle={
              <>
                <span data-testid="rollout-state">
                  <StateBadge state={r.state} />
                </span>{' '}
                <span data-testid="rollout-stage">{stageText(r)}</span> · {fromVersions(r)}
                {r.selector ? <code>{r.selector}</code> : 'every device'} · started{' '}
                {ago(r.created_at)} by {r.created_by}
              </>
            }
            actions={
              mayOperate &&
              (Object.keys(ACTIONS) as Action[])
                .filter((a) => ACTIONS[a].when(r))
                .map((a) => (
                  <button
                    key={a}
                    type="button"
                    class={`btn ${a === 'abort' ? 'btn-danger-outline' : a === 'approve' || a === 'resume' ? 'btn-primary' : ''}`}
                    onClick={() => setActing(a)}
                  >
                    {ACTIONS[a].label}
                  </button>
                ))
            }
          />
          <ReasonBanner rollout={r} />
          <Stages rollout={r} />
          {r.state !== 'completed' && <CurrentStage rollout={r} />}
          <History rollout={r} />
          {acting && (
            <ConfirmDialog
              title={ACTIONS[acting].title}
              body={<p>{ACTIONS[acting].body}</p>}
              confirmLabel={ACTIONS[acting].label}
              danger={ACTIONS[acting].danger}
              reasonLabel="Reason (recorded in the history)"
              onConfirm={async (reason) => {
                await client.post('/api/v1/rollouts/{id}/{action}', {
                  path: { id: r.id, action: acting },
                  body: reason ? { reason } : {},
                });
                rollout.refresh();
              }}
              onClose={() => setActing(null)}
            />
          )}
        </>
      )}
    </Loaded>
  );
}

function ReasonBanner(props: { rollout: Rollout }) {
  const r = props.rollout;
  const tone =
    r.state === 'rolled_back' || r.state === 'aborted'
      ? 'notice-bad'
      : r.state === 'paused' || r.state === 'waiting_approval'
        ? 'notice-warn'
        : '';
  const label: Record<string, string> = {
    rolled_back: 'Rolled back',
    aborted: 'Aborted',
    paused: 'Paused',
    waiting_approval: 'Waiting for approval',
    completed: 'Completed',
    running: 'Running',
  };
  return (
    <div class={`notice ${tone}`} data-testid="rollout-reason" role="status">
      <strong>{label[r.state] ?? r.state}:</strong> {r.reason}
    </div>
  );
}

function Stages(props: { rollout: Rollout }) {
  const r = props.rollout;
  return (
    <Card
      title="Stages"
      aside={`on a breached gate: ${r.policy.on_failure === 'pause' ? 'pause' : 'roll back'} · devices have ${duration(r.policy.activation_deadline_secs ?? 600)} to activate`}
    >
      <ol class="stages">
        {r.policy.stages.map((s, i) => {
          const status =
            r.state === 'completed' || i < r.stage
              ? 'done'
              : i === r.stage
                ? r.state === 'rolled_back' || r.state === 'aborted'
                  ? 'stopped'
                  : 'current'
                : 'upcoming';
          return (
            <li
              key={i}
              class={`stage stage-${status}`}
              data-testid={`stage-${i + 1}`}
              data-status={status}
            >
              <div class="stage-head">
                <span class="stage-num">{status === 'done' ? '✓' : i + 1}</span>
                <strong>{shareText(s)}</strong>
                {s.shadow && <Badge tone="info">shadow</Badge>}
                {s.manual_approval && <Badge tone="warn">approval</Badge>}
              </div>
              <div class="muted small">bake {duration(s.bake_secs ?? 0)}</div>
              <ul class="gate-list small">
                {gateTerms(s.gates ?? {}).map((g) => (
                  <li key={g}>{g}</li>
                ))}
              </ul>
            </li>
          );
        })}
      </ol>
    </Card>
  );
}

const GATE_NAMES: Record<string, string> = {
  min_devices_reporting: 'devices reporting',
  max_failed_ratio: 'failed to activate',
  max_error_rate: 'error rate',
  max_p95_latency_ratio: 'p95 latency vs. old version',
  min_shadow_agreement: 'shadow agreement',
};

function gateValue(gate: string, v: number | null | undefined): string {
  if (v === null || v === undefined) return '—';
  if (gate === 'min_devices_reporting') return String(v);
  if (gate === 'max_p95_latency_ratio') return `${v.toFixed(2)}×`;
  return percent(v, 2);
}

function gateTerms(g: Schemas['Gates']): string[] {
  const out: string[] = [];
  if (g.min_devices_reporting != null) out.push(`≥ ${g.min_devices_reporting} reporting`);
  if (g.max_failed_ratio != null) out.push(`≤ ${percent(g.max_failed_ratio)} failed`);
  if (g.max_error_rate != null) out.push(`≤ ${percent(g.max_error_rate, 2)} errors`);
  if (g.max_p95_latency_ratio != null) out.push(`p95 ≤ ${g.max_p95_latency_ratio}× old`);
  if (g.min_shadow_agreement != null) out.push(`≥ ${percent(g.min_shadow_agreement)} agree`);
  return out.length ? out : ['no gates'];
}

/**
 * The figures to show for the current stage: live while the rollout is open; for one rolled
 * back or aborted (its cohort is empty now), those recorded with its last transition.
 */
function stageFigures(r: Rollout): {
  devices: Schemas['DeviceCounts'];
  gates: Schemas['GateValue'][];
  recorded: boolean;
} {
  if (r.state === 'rolled_back' || r.state === 'aborted') {
    const last = r.history?.[r.history.length - 1];
    const numbers = last?.numbers as
      { devices?: Schemas['DeviceCounts']; gates?: Schemas['GateValue'][] } | undefined;
    if (numbers?.devices && Array.isArray(numbers.gates)) {
      return { devices: numbers.devices, gates: numbers.gates, recorded: true };
    }
  }
  return { devices: r.devices ?? NO_DEVICES, gates: r.gates ?? [], recorded: false };
}

function CurrentStage(props: { rollout: Rollout }) {
  const r = props.rollout;
  const { devices: d, gates, recorded } = stageFigures(r);
  const when = recorded ? ` when it was ${r.state.replace(/_/g, ' ')}` : '';
  const stage = r.policy.stages[r.stage];
  const bakeLeft = stage
    ? Math.max(0, (stage.bake_secs ?? 0) - (Date.now() - Date.parse(r.stage_started_at)) / 1000)
    : 0;
  return (
    <div class="grid-2">
      <Card title={`Stage ${r.stage + 1}: devices${when}`} testid="stage-devices">
        <div class="stats stats-tight">
          <Stat label="In stage" value={d.in_stage} hint={`of ${d.matching} matching`} />
          <Stat label="Reporting" value={d.reporting} hint="health for the candidate" />
          <Stat
            label="Baking"
            value={bakeLeft > 0 ? duration(bakeLeft) : 'done'}
            hint={`stage opened ${ago(r.stage_started_at)}`}
          />
        </div>
        <StackedBar
          total={d.in_stage}
          parts={[
            { label: 'Running the candidate', value: d.active, tone: 'good' },
            { label: 'Pending', value: d.pending, tone: 'info' },
            { label: 'Failed', value: d.failed, tone: 'bad' },
          ]}
          testid="stage-device-bar"
        />
      </Card>
      <Card title={`Stage ${r.stage + 1}: gates${when}`} testid="gates">
        {gates.length === 0 ? (
          <Empty title="This stage has no gates.">It advances once its bake time has passed.</Empty>
        ) : (
          <table class="table compact">
            <thead>
              <tr>
                <th>Gate</th>
                <th class="num">Measured</th>
                <th class="num">Threshold</th>
                <th>Status</th>
              </tr>
            </thead>
            <tbody>
              {gates.map((g) => (
                <tr key={g.gate} data-testid={`gate-${g.gate}`}>
                  <td>{GATE_NAMES[g.gate] ?? g.gate}</td>
                  <td class="num">{gateValue(g.gate, g.value)}</td>
                  <td class="num">
                    {g.gate.startsWith('min_') ? '≥ ' : '≤ '}
                    {gateValue(g.gate, g.threshold)}
                  </td>
                  <td>
                    <StateBadge state={g.status} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Card>
    </div>
  );
}

function History(props: { rollout: Rollout }) {
  const rows = [...(props.rollout.history ?? [])].reverse();
  return (
    <Card title="History" aside="newest first" testid="history">
      <table class="table">
        <thead>
          <tr>
            <th>When</th>
            <th>Who</th>
            <th>Event</th>
            <th>Stage</th>
            <th>Why</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((t, i) => (
            <tr key={`${t.at}-${i}`} data-testid="history-row">
              <td title={timestamp(t.at)} class="nowrap">
                {timestamp(t.at)}
              </td>
              <td>{t.actor}</td>
              <td>
                <StateBadge state={t.to_state} />{' '}
                {t.event !== t.to_state && (
                  <span class="muted small">{t.event.replace(/_/g, ' ')}</span>
                )}
              </td>
              <td class="num">{t.stage + 1}</td>
              <td>{t.reason}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Card>
  );
}
