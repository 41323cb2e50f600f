/**
 * Renders an error with every cause under it on one log line: the incident this product
 * answers had peers logging "error decoding response body" with the real reason three causes
 * down. Used by logs on every layer.
 */

const MAX_DEPTH = 16;
const SYSTEM_CODE = /^(E[A-Z0-9]+|ERR_[A-Z0-9_]+)$/;

/**
 * Renders `err.message` followed by each `.cause` as "a: b: c". The errors of an
 * AggregateError (e.g. happy-eyeballs connect failures) are rendered in brackets,
 * "a: [b1 | b2]". Cycles and very deep chains are cut; a cause whose message repeats the
 * previous one is skipped, so wrappers that copy their cause's message do not stutter.
 */
export function causeChain(err: unknown): string {
  return render(err, new Set(), 0);
}

function render(err: unknown, seen: Set<unknown>, depth: number): string {
  const parts: string[] = [];
  let cur: unknown = err;
  let prev: string | undefined;
  while (cur !== undefined && cur !== null && depth < MAX_DEPTH) {
    if (seen.has(cur)) {
      parts.push("<cycle>");
      break;
    }
    seen.add(cur);
    let text = describe(cur);
    if (cur instanceof AggregateError && cur.errors.length > 0) {
      const inner = cur.errors.map((e) => render(e, seen, depth + 1)).join(" | ");
      text = text === "" ? `[${inner}]` : `${text}: [${inner}]`;
    }
    if (text !== "" && text !== prev) parts.push(text);
    prev = text;
    cur = typeof cur === "object" && "cause" in cur ? (cur as { cause?: unknown }).cause : undefined;
    depth++;
  }
  return parts.length > 0 ? parts.join(": ") : String(err);
}

function describe(v: unknown): string {
  if (v instanceof Error) {
    const text = v.message !== "" ? v.message : v.name;
    // System errors carry the useful part in `code` (ECONNRESET, ERR_SSL_...); keep it. Our
    // own stable codes stay out: the message already says it in words.
    const code = (v as { code?: unknown }).code;
    return typeof code === "string" && SYSTEM_CODE.test(code) && !text.includes(code) ? `${text} (${code})` : text;
  }
  if (typeof v === "object" && v !== null && "message" in v && typeof v.message === "string") return v.message;
  if (typeof v === "string") return v;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** Whether `err` or one of its `.cause`s (up to the same depth `causeChain` renders) satisfies `pred`. */
export function hasCause(err: unknown, pred: (cause: unknown) => boolean): boolean {
  for (let c: unknown = err, depth = 0; c !== undefined && c !== null && depth < MAX_DEPTH; c = c instanceof Error ? c.cause : undefined, depth++) {
    if (pred(c)) return true;
  }
  return false;
}
