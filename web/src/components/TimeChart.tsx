// Time-series charts with uPlot: small, fast, and made for exactly this (numbers over time).

import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export { align } from './align';

export interface Series {
  label: string;
  /** One value per x; null for a gap. */
  values: (number | null)[];
  color: string;
  dash?: boolean;
}

export const PALETTE = [
  '#2563eb',
  '#d97706',
  '#059669',
  '#7c3aed',
  '#dc2626',
  '#0891b2',
  '#4b5563',
];

/**
 * A line chart over Unix-second timestamps. Data updates in place (no flicker while live
 * polling); the chart follows its container's width.
 */
export function TimeChart(props: {
  x: number[];
  series: Series[];
  unit: string;
  height?: number;
  testid?: string;
  format?: (v: number) => string;
  /** The x range to show (Unix seconds); by default the data's, widened around one point. */
  xRange?: [number, number];
}) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const xRangeRef = useRef(props.xRange);
  xRangeRef.current = props.xRange;
  const shapeKey = props.series.map((s) => `${s.label}|${s.color}|${s.dash ? 1 : 0}`).join(';');
  const fmt = props.format ?? ((v: number) => `${+v.toFixed(2)} ${props.unit}`);

  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: props.height ?? 220,
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: {
          time: true,
          range: (_u, min, max) =>
            xRangeRef.current ?? (min === max ? [min - 60, max + 60] : [min, max]),
        },
        y: { range: (_u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] },
      },
      axes: [
        { stroke: '#6b7280', grid: { stroke: '#eef0f3' }, ticks: { stroke: '#e5e7eb' } },
        {
          stroke: '#6b7280',
          grid: { stroke: '#eef0f3' },
          ticks: { stroke: '#e5e7eb' },
          size: 64,
          values: (_u, vals) => vals.map((v) => (v == null ? '' : fmt(v))),
        },
      ],
      series: [
        {},
        ...props.series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 2,
          dash: s.dash ? [6, 4] : undefined,
          points: { show: true, size: 4 },
          spanGaps: false,
          value: (_u: uPlot, v: number | null) => (v == null ? '—' : fmt(v)),
        })),
      ],
    };
    const u = new uPlot(
      opts,
      [props.x, ...props.series.map((s) => s.values)] as uPlot.AlignedData,
      el,
    );
    plot.current = u;
    const resize = new ResizeObserver(() => {
      u.setSize({ width: Math.max(200, el.clientWidth), height: props.height ?? 220 });
    });
    resize.observe(el);
    return () => {
      resize.disconnect();
      u.destroy();
      plot.current = null;
    };
    // Rebuilt only when the set of series changes; values update below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shapeKey, props.unit]);

  useEffect(() => {
    plot.current?.setData([props.x, ...props.series.map((s) => s.values)] as uPlot.AlignedData);
  }, [props.x, props.series]);

  return <div class="chart" ref={host} data-testid={props.testid} />;
}
