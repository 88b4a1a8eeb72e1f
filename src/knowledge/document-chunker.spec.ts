import { describe, expect, it } from '@jest/globals';
import { chunkDocument, firstHeading, type SourceDocument } from './document-chunker.js';

const MIN = 300;
const MAX = 800;

/** A readable sentence of about `length` characters; `n` makes each one different. */
function sentence(n: number, length = 90): string {
  const words = `Sentence ${n} explains how the breaker guards the model while the fallbacks keep answering callers`.split(' ');
  let text = '';
  for (let i = 0; text.length < length - 1; i++) text += (text ? ' ' : '') + words[i % words.length];
  return `${text}.`;
}

function paragraph(first: number, sentences: number, sentenceLength = 90): string {
  return Array.from({ length: sentences }, (_, i) => sentence(first + i, sentenceLength)).join(' ');
}

function markdown(body: string): SourceDocument {
  return { id: 'guide', title: "Operator's guide", body };
}

const words = (text: string) => text.split(/\s+/).filter(Boolean);

describe('chunkDocument', () => {
  const guide = markdown(
    [
      "# Operator's guide",
      paragraph(0, 2),
      '## When the circuit opens',
      paragraph(10, 3),
      paragraph(20, 1),
      paragraph(30, 6),
      paragraph(40, 2),
      '## Recovery',
      paragraph(50, 12),
      '### The trial call',
      paragraph(70, 4),
    ].join('\n\n'),
  );

  it('keeps every excerpt within 300–800 characters, except a section that is shorter as a whole', () => {
    const chunks = chunkDocument(guide);
    const intro = chunks.filter((chunk) => chunk.title === "Operator's guide");
    const rest = chunks.filter((chunk) => chunk.title !== "Operator's guide");

    expect(chunks.length).toBeGreaterThan(4);
    for (const chunk of chunks) expect(chunk.text.length).toBeLessThanOrEqual(MAX);
    for (const chunk of rest) expect(chunk.text.length).toBeGreaterThanOrEqual(MIN);
    expect(intro).toEqual([expect.objectContaining({ text: paragraph(0, 2) })]);
  });

  it('titles each excerpt with the document title and its section headings, and leaves the headings out of the text', () => {
    const chunks = chunkDocument(guide);

    expect(new Set(chunks.map((chunk) => chunk.title))).toEqual(
      new Set([
        "Operator's guide",
        "Operator's guide › When the circuit opens",
        "Operator's guide › Recovery",
        "Operator's guide › Recovery › The trial call",
      ]),
    );
    expect(chunks.every((chunk) => chunk.documentId === 'guide' && !chunk.text.includes('#'))).toBe(true);
  });

  it('never cuts a word: the excerpts hold exactly the words of the document, in order', () => {
    const bodyWithoutHeadings = guide.body.replace(/^#.*$/gm, '');

    expect(chunkDocument(guide).flatMap((chunk) => words(chunk.text))).toEqual(words(bodyWithoutHeadings));
  });

  it('splits a paragraph longer than the maximum between sentences', () => {
    const long = paragraph(0, 20);
    const chunks = chunkDocument(markdown(long));

    expect(chunks.length).toBe(3);
    for (const chunk of chunks) {
      expect(chunk.text.length).toBeLessThanOrEqual(MAX);
      expect(chunk.text).toMatch(/^Sentence \d+ .*\.$/s);
    }
    expect(chunks.map((chunk) => chunk.text).join(' ')).toBe(long);
  });

  it('joins tiny paragraphs under the same heading, but never across headings', () => {
    const chunks = chunkDocument(
      markdown(['## Symptoms', 'Degraded answers.', 'A 503 now and then.', '## Causes', 'The token expired.'].join('\n\n')),
    );

    expect(chunks.map(({ title, text }) => [title, text])).toEqual([
      ["Operator's guide › Symptoms", 'Degraded answers.\n\nA 503 now and then.'],
      ["Operator's guide › Causes", 'The token expired.'],
    ]);
  });

  it('gives a tiny paragraph between two full ones sentences of a neighbour rather than leave it alone', () => {
    const [before, after] = [paragraph(0, 8, 98), paragraph(10, 8, 98)];
    const chunks = chunkDocument(markdown([before, 'See below.', after].join('\n\n')));

    expect(before.length + 'See below.'.length + 2).toBeGreaterThan(MAX);
    for (const chunk of chunks) expect(chunk.text.length).toBeGreaterThanOrEqual(MIN);
    expect(chunks.some((chunk) => chunk.text.includes('See below.\n\nSentence'))).toBe(true);
  });

  it('splits a list between items', () => {
    const list = Array.from({ length: 12 }, (_, i) => `- ${sentence(i)}`).join('\n');
    const chunks = chunkDocument(markdown(list));

    expect(chunks.length).toBeGreaterThan(1);
    for (const chunk of chunks) expect(chunk.text.split('\n').every((line) => line.startsWith('- '))).toBe(true);
  });

  it('keeps a code block whole and reads no headings inside it', () => {
    const code = ['```sh', '# not a heading', 'curl -s http://localhost:3000/health/circuit-breaker', '```'].join('\n');
    const chunks = chunkDocument(markdown(['## Check the breaker', code, 'Read the state.'].join('\n\n')));

    expect(chunks).toEqual([{ documentId: 'guide', title: "Operator's guide › Check the breaker", text: `${code}\n\nRead the state.` }]);
  });

  it('runs a code fence left open to the end of the document, reading no headings in it, and closes it in the excerpt', () => {
    const chunks = chunkDocument(
      markdown(['## Restart it', 'Run:', '~~~sh', 'systemctl restart assistant', '# still the script'].join('\n')),
    );

    expect(chunks).toEqual([
      {
        documentId: 'guide',
        title: "Operator's guide › Restart it",
        text: 'Run:\n\n~~~sh\nsystemctl restart assistant\n# still the script\n~~~',
      },
    ]);
  });

  it('splits a code block longer than the maximum between lines and fences every piece', () => {
    const lines = Array.from({ length: 40 }, (_, i) => `echo "line ${i} of a long script"`);
    const chunks = chunkDocument(markdown(['```sh', ...lines, '```'].join('\n')));

    expect(chunks.length).toBeGreaterThan(1);
    for (const chunk of chunks) {
      expect(chunk.text.length).toBeLessThanOrEqual(MAX);
      expect(chunk.text).toMatch(/^```sh\n[\s\S]+\n```$/);
    }
    expect(chunks.flatMap((chunk) => chunk.text.split('\n').slice(1, -1))).toEqual(lines);
  });

  it('treats a .txt document as paragraphs only: # lines are text and the title is the document title', () => {
    const doc = {
      id: 'notes/restart-policy',
      title: 'Restart policy',
      body: `# not a heading\n\n${paragraph(0, 5)}\n\n${paragraph(10, 5)}`,
    };
    const chunks = chunkDocument(doc, { format: 'text' });

    expect(chunks.length).toBe(2);
    expect(chunks.every((chunk) => chunk.title === 'Restart policy')).toBe(true);
    expect(chunks[0].text.startsWith('# not a heading\n\n')).toBe(true);
  });

  it('leaves a single word longer than the maximum whole', () => {
    const url = `https://example.com/${'a'.repeat(900)}`;
    const chunks = chunkDocument(markdown(`${paragraph(0, 3)} ${url} ${paragraph(5, 3)}`));

    expect(chunks.some((chunk) => chunk.text.includes(url))).toBe(true);
    expect(chunks.flatMap((chunk) => words(chunk.text))).toEqual(words(`${paragraph(0, 3)} ${url} ${paragraph(5, 3)}`));
  });

  it('makes no excerpt of an empty document', () => {
    expect(chunkDocument(markdown('# Only a title\n\n'))).toEqual([]);
  });
});

describe('firstHeading', () => {
  it('finds the first # heading outside code fences', () => {
    expect(firstHeading('```sh\n# a comment\n```\n\n## Section\n\n# The title\n')).toBe('The title');
  });

  it('finds nothing in a document without a # heading', () => {
    expect(firstHeading('## Only sections\n\ntext')).toBeUndefined();
  });
});
