// Fake customers from Faker's English data, composed with our own PRNG: the same seed gives
// the same customers, at millions per second rather than Faker's ~100k names per second.
import { faker } from '@faker-js/faker/locale/en'; // only English: the full package loads every locale (~250 ms)
import { Random } from './random.js';

export interface CustomerRow {
  id: number;
  name: string;
  email: string;
  country: string;
  segment: string;
  createdAtMicros: number;
}

const person = faker.definitions.person as unknown as { first_name: { generic: string[] }; last_name: { generic: string[] } };
const company = faker.definitions.company as unknown as { legal_entity_type: string[] };
const FIRST = person.first_name.generic;
const LAST = person.last_name.generic;
const LEGAL = company.legal_entity_type;
const DOMAINS = ['com', 'io', 'net', 'co', 'biz', 'org'];

/** Where invoicing customers sit, roughly: a few countries hold most of them. */
const COUNTRIES: Array<[string, number]> = [
  ['US', 30],
  ['GB', 9],
  ['DE', 8],
  ['FR', 6],
  ['CA', 5],
  ['ES', 4],
  ['MX', 4],
  ['BR', 4],
  ['IN', 4],
  ['NL', 3],
  ['IT', 3],
  ['AU', 3],
  ['JP', 3],
  ['SE', 2],
  ['CH', 2],
  ['PL', 2],
  ['IE', 2],
  ['AR', 2],
  ['CO', 1],
  ['CL', 1],
  ['SG', 1],
  ['ZA', 1],
];
const COUNTRY_TOTAL = COUNTRIES.reduce((s, [, w]) => s + w, 0);

export interface CustomerPlan {
  firstId: number;
  count: number;
  seed: number | string;
  /** Rank of each customer (by index) in the issuer popularity order: big issuers are enterprises. */
  issuerRank: (index: number) => number;
  /** Customers were created during the year before this instant (µs since the Unix epoch). */
  beforeMicros: number;
}

/** Yields the plan's customers in id order. */
export function* generateCustomers(plan: CustomerPlan): Generator<CustomerRow> {
  const rng = new Random(plan.seed, 1);
  const pick = <T>(list: readonly T[]) => list[rng.int(list.length)];
  const yearMicros = 365 * 86_400_000_000;
  for (let i = 0; i < plan.count; i++) {
    const id = plan.firstId + i;
    const share = plan.issuerRank(i) / plan.count;
    const freelancer = share > 0.2 && rng.next() < 0.25;
    let name: string;
    let local: string;
    if (freelancer) {
      const first = pick(FIRST);
      const last = pick(LAST);
      name = `${first} ${last}`;
      local = `${first}.${last}`;
    } else {
      const a = pick(LAST);
      const style = rng.next();
      name = style < 0.6 ? `${a} ${pick(LEGAL)}` : style < 0.85 ? `${a} - ${pick(LAST)}` : `${a}, ${pick(LAST)} and ${pick(LAST)}`;
      local = 'billing';
    }
    const domain = `${name.split(/[\s,-]+/)[0]}${id}`.toLowerCase().replace(/[^a-z0-9]/g, '');
    yield {
      id,
      name,
      email: `${local.toLowerCase().replace(/[^a-z0-9.]/g, '')}@${domain}.${pick(DOMAINS)}`,
      country: weightedCountry(rng.next() * COUNTRY_TOTAL),
      segment: freelancer ? 'freelancer' : share < 0.02 ? 'enterprise' : share < 0.2 ? 'mid-market' : 'smb',
      createdAtMicros: plan.beforeMicros - Math.floor(rng.next() * yearMicros),
    };
  }
}

function weightedCountry(x: number): string {
  for (const [code, w] of COUNTRIES) {
    if (x < w) return code;
    x -= w;
  }
  return COUNTRIES[0][0];
}
