import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { knowledgeConfig } from '../config/knowledge.config.js';
import { KnowledgeBase, MAX_QUERY_TERMS } from './knowledge-base.js';
import { KnowledgeModule } from './knowledge.module.js';

const SHIPPED_CORPUS = fileURLToPath(new URL('../../data/knowledge', import.meta.url));

const BREAKER_GUIDE = `# Circuit breaker

Every call to the model goes through the breaker.

## Half-open state

After the reset time-out one trial call is let through; the others keep getting the fallbacks.

## Thresholds

Five consecutive failures open it.
`;

describe('KnowledgeBase', () => {
  let dir: string;
  let moduleRef: TestingModule | undefined;
  let warn: ReturnType<typeof jest.spyOn>;
  let log: ReturnType<typeof jest.spyOn>;

  async function writeFiles(files: Record<string, string>): Promise<void> {
    for (const [path, text] of Object.entries(files)) {
      await mkdir(dirname(join(dir, path)), { recursive: true });
      await writeFile(join(dir, path), text);
    }
  }

  async function startKnowledgeBase(knowledgeDir = dir): Promise<KnowledgeBase> {
    moduleRef = await Test.createTestingModule({ imports: [KnowledgeModule] })
      .overrideProvider(knowledgeConfig.KEY)
      .useValue({ dir: knowledgeDir })
      .compile();
    await moduleRef.init();
    return moduleRef.get(KnowledgeBase);
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'knowledge-base-'));
    warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    log = jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
  });

  afterEach(async () => {
    await moduleRef?.close();
    moduleRef = undefined;
    jest.restoreAllMocks();
    await rm(dir, { recursive: true, force: true });
  });

  it('loads .md and .txt files from every sub-folder, with ids relative to the dir', async () => {
    await writeFiles({
      'operations/circuit-breaker.md': BREAKER_GUIDE,
      'restart-policy.txt': 'Pods restart when the liveness probe fails three times.',
      'diagram.png': 'not text',
      '.drafts/secret.md': '# Draft\n\nUnfinished breaker notes.',
    });

    const knowledge = await startKnowledgeBase();

    expect(knowledge.size).toEqual({ documents: 2, excerpts: 4 });
    expect(knowledge.search('breaker', 5).map((excerpt) => excerpt.documentId)).toContain('operations/circuit-breaker');
    expect(knowledge.search('liveness', 5)).toEqual([
      {
        documentId: 'restart-policy',
        title: 'Restart policy',
        text: 'Pods restart when the liveness probe fails three times.',
        score: expect.any(Number),
      },
    ]);
    expect(knowledge.search('unfinished', 5)).toEqual([]);
  });

  it('titles a document by its first # heading, else by its file name made readable', async () => {
    await writeFiles({ 'on-call_handbook.md': 'Page the on-call engineer first.', 'guide.md': BREAKER_GUIDE });

    const knowledge = await startKnowledgeBase();

    expect(knowledge.search('page', 1)[0].title).toBe('On call handbook');
    expect(knowledge.search('thresholds', 1)[0].title).toBe('Circuit breaker › Thresholds');
  });

  it('logs how many documents and excerpts it indexed from which dir', async () => {
    await writeFiles({ 'guide.md': BREAKER_GUIDE });

    await startKnowledgeBase();

    expect(log).toHaveBeenCalledWith(`Indexed 1 documents as 3 excerpts from ${dir}`);
  });

  it('ranks an excerpt whose title matches above one that only mentions the words in its body', async () => {
    await writeFiles({
      'a-notes.md': '# Notes\n\nDuring a deploy the half-open trial may hit a new pod; the state is per replica.',
      'b-guide.md': BREAKER_GUIDE,
    });

    const knowledge = await startKnowledgeBase();
    const [best, second] = knowledge.search('half-open state', 2);

    expect(best.title).toBe('Circuit breaker › Half-open state');
    expect(second.documentId).toBe('a-notes');
    expect(best.score).toBeGreaterThan(second.score);
  });

  it('returns at most topK excerpts, best first, with scores rounded to 2 decimals', async () => {
    await writeFiles({ 'guide.md': BREAKER_GUIDE, 'more.md': '# More\n\nThe breaker opens. The breaker closes. The fallbacks answer.' });

    const knowledge = await startKnowledgeBase();
    const excerpts = knowledge.search('breaker fallbacks', 2);

    expect(excerpts).toHaveLength(2);
    expect(excerpts[0].score).toBeGreaterThanOrEqual(excerpts[1].score);
    for (const { score } of excerpts) expect(Math.round(score * 100) / 100).toBe(score);
    expect(knowledge.search('breaker fallbacks', 10).length).toBeGreaterThan(2);
  });

  it('finds "breakr" by fuzzy match and "circ" by prefix', async () => {
    await writeFiles({ 'guide.md': BREAKER_GUIDE });

    const knowledge = await startKnowledgeBase();

    expect(knowledge.search('breakr', 3)).not.toEqual([]);
    expect(knowledge.search('circ', 3)[0].title).toMatch(/^Circuit breaker/);
  });

  it('returns nothing for an empty, blank or unmatched query', async () => {
    await writeFiles({ 'guide.md': BREAKER_GUIDE });

    const knowledge = await startKnowledgeBase();

    expect(knowledge.search('', 3)).toEqual([]);
    expect(knowledge.search(' \n\t ', 3)).toEqual([]);
    expect(knowledge.search('what is the', 3)).toEqual([]);
    expect(knowledge.search('zymurgy', 3)).toEqual([]);
  });

  it('serves an empty index with a warning, and does not throw, when the dir is empty', async () => {
    const knowledge = await startKnowledgeBase();

    expect(knowledge.size).toEqual({ documents: 0, excerpts: 0 });
    expect(knowledge.search('breaker', 3)).toEqual([]);
    expect(warn).toHaveBeenCalledWith(expect.stringContaining(dir));
  });

  it('serves an empty index with a warning, and does not throw, when the dir does not exist', async () => {
    const missing = join(dir, 'missing');

    const knowledge = await startKnowledgeBase(missing);

    expect(knowledge.search('breaker', 3)).toEqual([]);
    expect(warn).toHaveBeenCalledWith(expect.stringContaining(missing));
  });

  it('skips a file it cannot read with a warning naming it, and indexes the rest', async () => {
    await writeFiles({ 'guide.md': BREAKER_GUIDE });
    await symlink(join(dir, 'gone.md'), join(dir, 'dangling.md'));

    const knowledge = await startKnowledgeBase();

    expect(knowledge.size.documents).toBe(1);
    expect(warn).toHaveBeenCalledWith(expect.stringContaining('dangling.md'));
  });

  it('loads the shipped corpus and answers "what does half-open mean" with the half-open section', async () => {
    const knowledge = await startKnowledgeBase(SHIPPED_CORPUS);
    const excerpts = knowledge.search('what does half-open mean', 3);

    expect(knowledge.size.documents).toBeGreaterThanOrEqual(5);
    expect(excerpts).toHaveLength(3);
    expect(excerpts[0]).toMatchObject({ documentId: 'circuit-breaker', title: expect.stringMatching(/Half-open/) });
    expect(excerpts[0].text).toMatch(/trial call/);
  });

  it('keeps its version for the same documents and changes it when one is edited (so cached answers are not reused)', async () => {
    await writeFiles({ 'breaker.md': BREAKER_GUIDE });
    const first = (await startKnowledgeBase()).version;
    await moduleRef?.close();
    const again = (await startKnowledgeBase()).version;
    await moduleRef?.close();
    await writeFiles({ 'breaker.md': BREAKER_GUIDE.replace('Five consecutive', 'Three consecutive') });
    const edited = (await startKnowledgeBase()).version;

    expect(again).toBe(first);
    expect(edited).not.toBe(first);
  });

  it(`considers a question's first ${MAX_QUERY_TERMS} distinct terms only, so a huge question costs no more than a long one`, async () => {
    await writeFiles({ 'breaker.md': BREAKER_GUIDE });
    const knowledge = await startKnowledgeBase();
    const filler = Array.from({ length: MAX_QUERY_TERMS }, (_, i) => `zzfill${i}`).join(' ');

    expect(knowledge.search(`${filler} thresholds`, 3)).toEqual([]);
    expect(knowledge.search(`thresholds ${filler}`, 3)[0]?.title).toContain('Thresholds');
    // a repeated word is one term: repetition does not push the rest out
    expect(knowledge.search(`${'breaker '.repeat(500)}thresholds`, 3).map((excerpt) => excerpt.title)).toEqual(
      expect.arrayContaining([expect.stringContaining('Thresholds')]),
    );
  });
});
