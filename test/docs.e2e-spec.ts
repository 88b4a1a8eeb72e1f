/**
 * The documentation agrees with the app and with itself: docs/configuration.md lists exactly the variables the app
 * validates (src/config/environment.ts) with the app's defaults, the README's short table does not contradict them,
 * every relative link in README.md and docs/*.md reaches a file (and a heading, for a `#anchor`), and the README
 * stays a front door.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getMetadataStorage } from 'class-validator';
import { Environment, validateEnvironment } from '../src/config/environment.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const README_PATH = join(ROOT, 'README.md');
const DOCS_DIR = join(ROOT, 'docs');
const CONFIGURATION_PATH = join(DOCS_DIR, 'configuration.md');
const README_MAX_LINES = 250;

const DOC_PATHS: readonly string[] = [
  README_PATH,
  ...readdirSync(DOCS_DIR)
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => join(DOCS_DIR, name)),
];

// ---------------------------------------------------------------------------------------------------------------
// The app's variables: every property of the validated Environment class (each carries a class-validator
// decorator), and every key validation gives back, so a variable declared either way is found.
// ---------------------------------------------------------------------------------------------------------------
const APP_DEFAULTS: Readonly<Record<string, unknown>> = { ...validateEnvironment({}) };
const APP_VARIABLES: readonly string[] = [
  ...new Set([
    ...getMetadataStorage()
      .getTargetValidationMetadatas(Environment, '', true, false)
      .map((metadata) => metadata.propertyName),
    ...Object.keys(APP_DEFAULTS),
  ]),
].sort();

// ---------------------------------------------------------------------------------------------------------------
// Markdown, read the way GitHub renders it (only what these checks need).
// ---------------------------------------------------------------------------------------------------------------

/** The lines outside fenced code blocks: a `# comment` in a shell example is no heading, a `[x](y)` there no link. */
function proseLines(markdown: string): string[] {
  const lines: string[] = [];
  let fence: string | undefined;
  for (const line of markdown.split('\n')) {
    const marker = /^\s*(```|~~~)/.exec(line)?.[1];
    if (marker !== undefined && (fence === undefined || fence === marker)) {
      fence = fence === undefined ? marker : undefined;
      continue;
    }
    if (fence === undefined) lines.push(line);
  }
  return lines;
}

/** GitHub's anchor for a heading: lower-case, punctuation dropped (but '-' and '_'), each space a '-'. */
function githubSlug(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** Every anchor a file's headings give, with GitHub's `-1`, `-2` … for a repeated heading. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of proseLines(markdown)) {
    const text = /^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/.exec(line)?.[1];
    if (text === undefined) continue;
    const slug = githubSlug(text);
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return anchors;
}

/** Targets of inline links and images outside code (code spans and fenced blocks). */
function linkTargets(markdown: string): string[] {
  const targets: string[] = [];
  for (const line of proseLines(markdown)) {
    const withoutCode = line.replace(/`[^`]*`/g, '``');
    for (const match of withoutCode.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) targets.push(match[1]);
  }
  return targets;
}

/** What is wrong with the relative links of a file: a missing file, or an anchor no heading of it gives. */
function brokenLinks(markdown: string, fromFile: string, read: (path: string) => string | undefined): string[] {
  const problems: string[] = [];
  for (const target of linkTargets(markdown)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
    const hash = target.indexOf('#');
    const pathPart = hash < 0 ? target : target.slice(0, hash);
    const anchor = hash < 0 ? undefined : decodeURIComponent(target.slice(hash + 1));
    const targetFile = pathPart === '' ? fromFile : resolve(dirname(fromFile), decodeURIComponent(pathPart));
    const text = read(targetFile);
    if (text === undefined) {
      problems.push(`${target}: no file ${relative(ROOT, targetFile)}`);
      continue;
    }
    if (anchor !== undefined && !anchorsOf(text).has(anchor)) {
      problems.push(`${target}: no heading in ${relative(ROOT, targetFile)} gives #${anchor}`);
    }
  }
  return problems;
}

function readIfFile(path: string): string | undefined {
  if (!existsSync(path)) return undefined;
  // A directory is a fine link target (GitHub shows its listing), but it has no headings.
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** The cells of a table row, split on the '|' that are not inside a code span. */
function cellsOf(row: string): string[] {
  const cells: string[] = [];
  let cell = '';
  let inCode = false;
  for (const char of row.trim().replace(/^\||\|$/g, '')) {
    if (char === '`') inCode = !inCode;
    if (char === '|' && !inCode) {
      cells.push(cell.trim());
      cell = '';
    } else cell += char;
  }
  cells.push(cell.trim());
  return cells;
}

interface VariableRow {
  names: string[];
  defaultCell: string;
}

/** The rows of every `| variable | default | meaning |` table of a file. */
function variableRows(markdown: string): VariableRow[] {
  const rows: VariableRow[] = [];
  let inTable = false;
  for (const line of proseLines(markdown)) {
    if (!line.trim().startsWith('|')) {
      inTable = false;
      continue;
    }
    const cells = cellsOf(line);
    if (cells[0] === 'variable' && cells[1] === 'default') {
      inTable = true;
      continue;
    }
    if (!inTable || /^-+$/.test(cells[0] ?? '')) continue;
    rows.push({ names: [...(cells[0] ?? '').matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((match) => match[1]), defaultCell: cells[1] ?? '' });
  }
  return rows;
}

/** The value a default cell starts with: "unset", a number, a word, or a code span ("5 (0 in …)" is 5). */
function documentedDefault(cell: string): string {
  const match = /^`([^`]+)`|^([^\s(,;=]+)/.exec(cell.trim());
  if (match === null) throw new Error(`a default cell that names no value: "${cell}"`);
  return match[1] ?? match[2];
}

/** Each row whose documented default is not the app's embedded one, in words. */
function wrongDefaults(rows: readonly VariableRow[]): string[] {
  const problems: string[] = [];
  for (const { names, defaultCell } of rows) {
    for (const name of names) {
      const documented = documentedDefault(defaultCell);
      const actual = APP_DEFAULTS[name];
      const agrees =
        documented === 'unset'
          ? actual === undefined
          : documented === 'empty'
            ? actual === ''
            : /^-?\d+(\.\d+)?$/.test(documented)
              ? actual === Number(documented)
              : actual !== undefined && String(actual) === documented;
      if (!agrees)
        problems.push(`${name}: documented ${documented}, the app's default is ${actual === undefined ? 'unset' : String(actual)}`);
    }
  }
  return problems;
}

function lineCount(text: string): number {
  const lines = text.split('\n');
  return text.endsWith('\n') ? lines.length - 1 : lines.length;
}

// =================================================================================================================

describe('the documentation', () => {
  describe('docs/configuration.md', () => {
    const rows = variableRows(readFileSync(CONFIGURATION_PATH, 'utf8'));

    it('has one row for each variable the app reads, and no row for a variable it does not', () => {
      expect(APP_VARIABLES).toContain('CIRCUIT_BREAKER_FAIL_THRESHOLD');
      expect(APP_VARIABLES).toContain('REDIS_URL');
      const documented = rows.flatMap((row) => row.names);
      expect(documented.filter((name) => !APP_VARIABLES.includes(name))).toEqual([]);
      expect(APP_VARIABLES.filter((name) => !documented.includes(name))).toEqual([]);
      expect(documented.filter((name, index) => documented.indexOf(name) !== index)).toEqual([]);
    });

    it('names one variable a row, so each row has a default and meaning of its own', () => {
      expect(rows.filter((row) => row.names.length !== 1)).toEqual([]);
    });

    it("gives each variable the app's embedded default (unset where the app has none)", () => {
      expect(rows.length).toBeGreaterThan(0);
      expect(wrongDefaults(rows)).toEqual([]);
    });
  });

  describe('README.md', () => {
    const readme = readFileSync(README_PATH, 'utf8');

    it(`is the front door: at most ${README_MAX_LINES} lines`, () => {
      expect(lineCount(readme)).toBeLessThanOrEqual(README_MAX_LINES);
    });

    it("names only variables the app reads in its short table, each with the app's default", () => {
      const rows = variableRows(readme);
      expect(rows.length).toBeGreaterThan(0);
      expect(rows.flatMap((row) => row.names).filter((name) => !APP_VARIABLES.includes(name))).toEqual([]);
      expect(wrongDefaults(rows)).toEqual([]);
    });

    it('links to every page of docs/', () => {
      const linked = new Set(linkTargets(readme).map((target) => resolve(ROOT, target.split('#')[0] ?? '')));
      expect(DOC_PATHS.filter((path) => path !== README_PATH && !linked.has(path)).map((path) => relative(ROOT, path))).toEqual([]);
    });
  });

  describe('links', () => {
    it.each(DOC_PATHS.map((path) => [relative(ROOT, path), path]))(
      'every relative link in %s reaches a file, and every #anchor a heading of that file',
      (_name, path) => {
        expect(brokenLinks(readFileSync(path, 'utf8'), path, readIfFile)).toEqual([]);
      },
    );
  });

  describe('the checks themselves', () => {
    it("make GitHub's anchors: lower-case, punctuation dropped but '-' and '_', spaces to '-'", () => {
      expect(githubSlug('Chaos suite (`npm run test:chaos`, part of `npm test`)')).toBe('chaos-suite-npm-run-testchaos-part-of-npm-test');
      expect(githubSlug('Health (Terminus bodies: `{status, info, error, details}`)')).toBe(
        'health-terminus-bodies-status-info-error-details',
      );
      expect(githubSlug('`POST /assistant/query`')).toBe('post-assistantquery');
      expect(githubSlug('OpenAI-compatible API (`/v1`)')).toBe('openai-compatible-api-v1');
      expect(githubSlug('RATE_LIMIT and keys')).toBe('rate_limit-and-keys');
      expect([...anchorsOf('# Notes\n\n```sh\n# not a heading\n```\n\n## Notes\n')]).toEqual(['notes', 'notes-1']);
    });

    it('find a missing file, a missing anchor and a link to a heading that exists', () => {
      const pages: Record<string, string> = { [join(ROOT, 'a.md')]: '# A page\n\n## Its part\n' };
      const read = (path: string) => pages[path];
      const from = join(ROOT, 'b.md');
      expect(brokenLinks('[ok](a.md#its-part) [also](a.md) `[code](nowhere.md)` [web](https://example.com/x)', from, read)).toEqual([]);
      expect(brokenLinks('[gone](c.md) [wrong](a.md#no-such-part)', from, read)).toEqual([
        'c.md: no file c.md',
        'a.md#no-such-part: no heading in a.md gives #no-such-part',
      ]);
      expect(brokenLinks('```\n[in a block](c.md)\n```\n[self](#nowhere)', from, () => '# B\n')).toEqual([
        '#nowhere: no heading in b.md gives #nowhere',
      ]);
    });

    it("read a table's names and defaults, and tell a default that differs from the app's", () => {
      const table = '| variable | default | meaning |\n| --- | --- | --- |\n| `PORT` | 3000 | port |\n| `HF_TOKEN` | unset | token |\n';
      expect(variableRows(table)).toEqual([
        { names: ['PORT'], defaultCell: '3000' },
        { names: ['HF_TOKEN'], defaultCell: 'unset' },
      ]);
      expect(wrongDefaults(variableRows(table))).toEqual([]);
      expect(
        wrongDefaults([
          { names: ['PORT'], defaultCell: '8080' },
          { names: ['CIRCUIT_BREAKER_ENABLED'], defaultCell: 'false' },
          { names: ['METRICS_PORT'], defaultCell: '9464' },
          { names: ['HF_MODEL'], defaultCell: 'unset' },
        ]),
      ).toEqual([
        "PORT: documented 8080, the app's default is 3000",
        "CIRCUIT_BREAKER_ENABLED: documented false, the app's default is true",
        "METRICS_PORT: documented 9464, the app's default is unset",
        "HF_MODEL: documented unset, the app's default is meta-llama/Llama-3.1-8B-Instruct",
      ]);
      expect(documentedDefault('5 (0 in `.env.development`)')).toBe('5');
      expect(documentedDefault('`./data/knowledge`')).toBe('./data/knowledge');
    });
  });
});
