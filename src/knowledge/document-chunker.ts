import type { Excerpt } from './excerpt.js';

export interface SourceDocument {
  id: string;
  title: string;
  body: string;
}

export type Chunk = Omit<Excerpt, 'score'>;

export interface ChunkOptions {
  /** Plain text has no headings or code fences: paragraphs only. */
  format?: 'markdown' | 'text';
  /** Shorter chunks are avoided, even at the price of a cut inside a paragraph; a short section stays one chunk. */
  minChars?: number;
  /** No chunk is longer, unless one word (or one line of code) alone is. */
  maxChars?: number;
}

export const TITLE_SEPARATOR = ' › ';

const PARAGRAPH_BREAK = '\n\n';
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
const FENCE_OPEN = /^ {0,3}(`{3,}|~{3,})/;
/** What cutting a section before an atom costs, and how the atom is joined when it is not cut. */
const BOUNDARIES = {
  block: { joiner: PARAGRAPH_BREAK, cost: 0 },
  item: { joiner: '\n', cost: 0.25 },
  sentence: { joiner: ' ', cost: 0.5 },
  codeLine: { joiner: PARAGRAPH_BREAK, cost: 0.5 },
  word: { joiner: ' ', cost: 2 },
} as const;
/** Each chunk costs a little, so short neighbours are joined rather than left apart. */
const CHUNK_COST = 0.2;
/** A chunk at half of min costs as much as two sentence cuts, so a cut inside a paragraph beats an orphan. */
const SHORT_CHUNK_COST = 2;
const ITEM_START = /\n(?=[ \t]*(?:[-*+] |\d+[.)] |\|))/;
const SENTENCE_END = /(?<=[.!?]["')\]]*)\s+/;

interface Block {
  text: string;
  /** A fenced code block: cut only between its lines, and each piece re-fenced. */
  code: boolean;
}

interface Section {
  headings: string[];
  blocks: Block[];
}

/** Cuts a document into excerpts of a few hundred characters along headings, paragraphs and sentences. */
export function chunkDocument(doc: SourceDocument, options: ChunkOptions = {}): Chunk[] {
  const { format = 'markdown', minChars = 300, maxChars = 800 } = options;
  return parseSections(doc.body, format === 'markdown').flatMap((section) => {
    const title = [doc.title, ...section.headings.filter((heading) => heading !== doc.title)].join(TITLE_SEPARATOR);
    return packSection(section.blocks, minChars, maxChars).map((text) => ({ documentId: doc.id, title, text }));
  });
}

/** The text of the first `# ` heading outside code fences. */
export function firstHeading(markdown: string): string | undefined {
  let fence: string | undefined;
  for (const line of markdown.split(/\r?\n/)) {
    if (fence) {
      if (closesFence(line, fence)) fence = undefined;
      continue;
    }
    fence = FENCE_OPEN.exec(line)?.[1];
    const heading = HEADING.exec(line);
    if (heading?.[1] === '#' && heading[2]) return heading[2];
  }
  return undefined;
}

function parseSections(body: string, markdown: boolean): Section[] {
  const sections: Section[] = [{ headings: [], blocks: [] }];
  const trail: Array<{ level: number; text: string }> = [];
  let paragraph: string[] = [];
  let fence: { marker: string; lines: string[] } | undefined;
  const blocks = () => sections[sections.length - 1].blocks;
  const endParagraph = () => {
    const text = paragraph.join('\n').trim();
    if (text) blocks().push({ text, code: false });
    paragraph = [];
  };

  for (const line of body.split(/\r?\n/)) {
    if (fence) {
      fence.lines.push(line);
      if (closesFence(line, fence.marker)) {
        blocks().push({ text: fence.lines.join('\n'), code: true });
        fence = undefined;
      }
      continue;
    }
    const fenceOpen = markdown ? FENCE_OPEN.exec(line) : null;
    const heading = markdown ? HEADING.exec(line) : null;
    if (fenceOpen) {
      endParagraph();
      fence = { marker: fenceOpen[1], lines: [line] };
    } else if (heading) {
      endParagraph();
      const level = heading[1].length;
      while ((trail.at(-1)?.level ?? 0) >= level) trail.pop();
      if (heading[2]) trail.push({ level, text: heading[2] });
      sections.push({ headings: trail.map((entry) => entry.text), blocks: [] });
    } else if (line.trim() === '') {
      endParagraph();
    } else {
      paragraph.push(line);
    }
  }
  // An unclosed fence runs to the end of the document, as in CommonMark; close it so pieces stay valid.
  if (fence) blocks().push({ text: [...fence.lines, fence.marker].join('\n'), code: true });
  endParagraph();
  return sections.filter((section) => section.blocks.length > 0);
}

function closesFence(line: string, marker: string): boolean {
  const trimmed = line.trim();
  return trimmed.length >= marker.length && trimmed === marker[0].repeat(trimmed.length);
}

type Boundary = keyof typeof BOUNDARIES;

interface Atom {
  text: string;
  /** How the atom attaches to the one before it, which decides the cost of cutting there. */
  boundary: Boundary;
}

/**
 * Cuts a section at the cheapest boundaries (dynamic programming over its sentences, list items and
 * paragraphs): every chunk at most `max`, few chunks below `min`, paragraphs kept whole when that is possible.
 */
function packSection(blocks: Block[], min: number, max: number): string[] {
  const atoms = blocks.flatMap((block) => (block.code ? codeAtoms(block.text, max) : proseAtoms(block.text, max)));
  const ideal = (min + max) / 2;
  const chunkCost = (length: number) =>
    CHUNK_COST + ((length - ideal) / max) ** 2 + (length < min ? (SHORT_CHUNK_COST * (min - length)) / min : 0);
  const best = [0];
  const startOf = [0];
  for (let end = 1; end <= atoms.length; end++) {
    best[end] = Infinity;
    let length = 0;
    for (let start = end - 1; start >= 0; start--) {
      length += atoms[start].text.length + (start < end - 1 ? BOUNDARIES[atoms[start + 1].boundary].joiner.length : 0);
      // A single atom longer than max (one long word or code line) is allowed alone.
      if (length > max && start < end - 1) break;
      const cost = best[start] + chunkCost(length) + (start > 0 ? BOUNDARIES[atoms[start].boundary].cost : 0);
      if (cost < best[end]) [best[end], startOf[end]] = [cost, start];
    }
  }
  const chunks: string[] = [];
  for (let end = atoms.length; end > 0; end = startOf[end]) {
    const [first, ...rest] = atoms.slice(startOf[end], end);
    chunks.unshift(first.text + rest.map((atom) => BOUNDARIES[atom.boundary].joiner + atom.text).join(''));
  }
  return chunks;
}

/** List items (or table rows), their sentences, and for a sentence longer than max, runs of words. */
function proseAtoms(text: string, max: number): Atom[] {
  const atoms: Atom[] = [];
  text.split(ITEM_START).forEach((item, i) =>
    item.split(SENTENCE_END).forEach((sentence, j) => {
      const pieces = sentence.length > max ? packBalanced(sentence.split(/\s+/), ' ', max) : [sentence];
      pieces.forEach((piece, k) => atoms.push({ text: piece, boundary: k > 0 ? 'word' : j > 0 ? 'sentence' : i > 0 ? 'item' : 'block' }));
    }),
  );
  return atoms;
}

/** A code block whole, or if longer than max, runs of its lines, each re-fenced. */
function codeAtoms(text: string, max: number): Atom[] {
  if (text.length <= max) return [{ text, boundary: 'block' }];
  const lines = text.split('\n');
  const [open, close] = [lines[0], lines[lines.length - 1]];
  const budget = max - open.length - close.length - 2;
  return packBalanced(lines.slice(1, -1), '\n', budget).map((body, i) => ({
    text: [open, body, close].join('\n'),
    boundary: i > 0 ? 'codeLine' : 'block',
  }));
}

/** Packs parts into pieces of about equal length (total / pieces needed), each at most `max`. */
function packBalanced(parts: string[], joiner: string, max: number): string[] {
  const total = parts.join(joiner).length;
  const target = total / Math.max(1, Math.ceil(total / max));
  const pieces: string[] = [];
  let current: string | undefined;
  for (const part of parts) {
    const joined = current === undefined ? part : `${current}${joiner}${part}`;
    if (current !== undefined && (joined.length > max || joined.length - target > target - current.length)) {
      pieces.push(current);
      current = part;
    } else {
      current = joined;
    }
  }
  if (current !== undefined) pieces.push(current);
  return pieces;
}
