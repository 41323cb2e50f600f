/**
 * Renders an error with every cause under it, for logs: the incident this product answers
 * had peers logging "error decoding response body" with the real reason three causes down.
 */
export function causeChain(err: unknown, maxDepth = 8): string {
  const parts: string[] = [];
  let cur: unknown = err;
  for (let depth = 0; cur !== undefined && cur !== null && depth < maxDepth; depth++) {
    if (cur instanceof AggregateError) {
      parts.push(`${cur.message} [${cur.errors.map((e) => causeChain(e, maxDepth - depth - 1)).join("; ")}]`);
    } else if (cur instanceof Error) {
      const code = (cur as { code?: unknown }).code;
      parts.push(code !== undefined && !cur.message.includes(String(code)) ? `${cur.message} (${String(code)})` : cur.message);
    } else {
      parts.push(String(cur));
      break;
    }
    cur = (cur as { cause?: unknown }).cause;
  }
  return parts.join(": ");
}
