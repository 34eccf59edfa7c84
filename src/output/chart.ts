// A horizontal bar chart for the terminal: one bar per row, lengths proportional to exact
// decimal values (compared as integers, so no float decides an order or a zero-length bar).

export interface Bar {
  label: string;
  /** A non-negative decimal string. */
  value: string;
}

/** Renders bars `width` characters wide at most, labels padded, values right-aligned. */
export function barChart(bars: Bar[], opts: { width?: number; title?: string } = {}): string {
  if (!bars.length) return (opts.title ? opts.title + '\n' : '') + '(no rows)\n';
  const width = Math.max(10, opts.width ?? 50);
  const units = bars.map((b) => units10(b.value));
  // biome-ignore lint/complexity/useMathMinMax: bigints (Math.max takes numbers)
  const max = units.reduce((a, b) => (b > a ? b : a), 0n);
  const labels = bars.map((b) => (b.label.length > 30 ? b.label.slice(0, 29) + '…' : b.label));
  const lw = Math.max(...labels.map((l) => l.length));
  const vw = Math.max(...bars.map((b) => b.value.length));
  const lines = bars.map((b, i) => {
    const eighths = max > 0n ? Number((units[i] * BigInt(width * 8)) / max) : 0;
    const bar = '█'.repeat(Math.floor(eighths / 8)) + (eighths % 8 ? ' ▏▎▍▌▋▊▉'[eighths % 8] : '');
    return `${labels[i].padEnd(lw)}  ${b.value.padStart(vw)}  ${bar}`;
  });
  return (opts.title ? opts.title + '\n' : '') + lines.join('\n') + '\n';
}

/** A decimal string as an integer of its digits at a common scale of 6 decimals. */
function units10(value: string): bigint {
  const [i, f = ''] = value.replace(/^-/, '').split('.');
  return BigInt((i || '0') + f.padEnd(6, '0').slice(0, 6));
}
