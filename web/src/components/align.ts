// Shapes point lists into uPlot's aligned columns. Kept apart from the chart so it is
// unit-tested without a DOM.

/**
 * Aligns points given per series on one shared, sorted x axis (uPlot's data shape), with
 * nulls where a series has no point.
 */
export function align<P>(
  points: P[],
  x: (p: P) => number,
  seriesKey: (p: P) => string,
  y: (p: P) => number | null,
): { x: number[]; keys: string[]; values: (number | null)[][] } {
  const xs = [...new Set(points.map(x))].sort((a, b) => a - b);
  const keys = [...new Set(points.map(seriesKey))].sort();
  const index = new Map(xs.map((v, i) => [v, i]));
  const values = keys.map(() => xs.map((): number | null => null));
  for (const p of points) {
    const row = values[keys.indexOf(seriesKey(p))];
    const col = index.get(x(p));
    if (row && col !== undefined) row[col] = y(p);
  }
  return { x: xs, keys, values };
}
