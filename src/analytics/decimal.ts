// Exact decimal strings <-> integer units (cents for scale 2) as BigInt: never a JS number.
import { UsageError } from '../errors.js';

// What PostgreSQL and DuckDB print for a decimal of that scale: "123.40". Taken as is (no parsing
// into parts): group turns ~150,000 of them into integers per answer.
const canonical: RegExp[] = [];
function isCanonical(value: string, scale: number): boolean {
  canonical[scale] ??= new RegExp(`^-?(0|[1-9]\\d*)${scale > 0 ? `\\.\\d{${scale}}` : ''}$`);
  return canonical[scale].test(value) && !/^-0(\.0*)?$/.test(value);
}

/** "123.4" at scale 2 -> 12340n. Refuses digits beyond the scale (that would round). */
export function toUnits(value: string, scale: number): bigint {
  if (isCanonical(value, scale)) return BigInt(value.replace('.', ''));
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(value.trim());
  if (!m) throw new UsageError(`"${value}" is not a decimal number`);
  const frac = (m[3] ?? '').replace(/0+$/, '');
  if (frac.length > scale) throw new UsageError(`"${value}" has more than ${scale} decimals`);
  const units = BigInt(m[2] + frac.padEnd(scale, '0'));
  return m[1] ? -units : units;
}

/** 12340n at scale 2 -> "123.40". */
export function fromUnits(units: bigint, scale: number): string {
  const neg = units < 0n;
  const digits = (neg ? -units : units).toString().padStart(scale + 1, '0');
  const int = digits.slice(0, digits.length - scale);
  const frac = scale > 0 ? '.' + digits.slice(digits.length - scale) : '';
  return (neg ? '-' : '') + int + frac;
}

/** A decimal string printed at exactly `scale` decimals ("0" -> "0.00"). */
export function atScale(value: string, scale: number): string {
  return isCanonical(value, scale) ? value : fromUnits(toUnits(value, scale), scale);
}

/** total / count rounded half away from zero to `scale` decimals, exactly. */
export function average(total: string, count: bigint, scale: number): string {
  if (count === 0n) return fromUnits(0n, scale);
  const u = toUnits(total, scale);
  const abs = u < 0n ? -u : u;
  const q = (2n * abs + count) / (2n * count);
  return fromUnits(u < 0n ? -q : q, scale);
}
