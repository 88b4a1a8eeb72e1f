import { readdir, readFile } from 'node:fs/promises';
import { basename, extname, join, relative, sep } from 'node:path';
import { firstHeading, type ChunkOptions, type SourceDocument } from './document-chunker.js';

export type DocumentFormat = NonNullable<ChunkOptions['format']>;

export interface LoadedDocument extends SourceDocument {
  format: DocumentFormat;
}

export interface SkippedFile {
  path: string;
  reason: string;
}

export interface LoadedDocuments {
  documents: LoadedDocument[];
  skipped: SkippedFile[];
}

const FORMAT_BY_EXTENSION: Readonly<Record<string, DocumentFormat>> = { '.md': 'markdown', '.txt': 'text' };

/**
 * Reads every `.md` / `.txt` file under `dir`, recursively, sorted by id; hidden files and folders are
 * ignored. Files that cannot be read are reported in `skipped`; a `dir` that cannot be listed throws.
 */
export async function loadDocuments(dir: string): Promise<LoadedDocuments> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const paths = entries
    // Symbolic links count: Kubernetes mounts ConfigMap files as links.
    .filter((entry) => (entry.isFile() || entry.isSymbolicLink()) && formatOf(entry.name) !== undefined)
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .filter((path) => !path.split(sep).some((segment) => segment.startsWith('.')));
  const reads = await Promise.allSettled(paths.map((path) => readDocument(dir, path)));
  const documents: LoadedDocument[] = [];
  const skipped: SkippedFile[] = [];
  reads.forEach((read, i) => {
    if (read.status === 'fulfilled') documents.push(read.value);
    else skipped.push({ path: paths[i], reason: read.reason instanceof Error ? read.reason.message : String(read.reason) });
  });
  documents.sort((a, b) => a.id.localeCompare(b.id));
  return { documents, skipped };
}

async function readDocument(dir: string, path: string): Promise<LoadedDocument> {
  const format = formatOf(path) ?? 'text';
  const body = (await readFile(join(dir, path), 'utf8')).replace(/^\uFEFF/, '');
  const extension = extname(path);
  const id = path.slice(0, -extension.length).split(sep).join('/');
  const fallbackTitle = humanise(basename(path, extension));
  const title = format === 'markdown' ? (firstHeading(body) ?? fallbackTitle) : fallbackTitle;
  return { id, title, body, format };
}

function formatOf(fileName: string): DocumentFormat | undefined {
  return FORMAT_BY_EXTENSION[extname(fileName).toLowerCase()];
}

/** "runbook-circuit_open" → "Runbook circuit open". */
function humanise(name: string): string {
  const words = name.replace(/[-_\s]+/g, ' ').trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}
