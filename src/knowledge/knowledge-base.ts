import { CacheableMemory } from '@cacheable/memory';
import { Inject, Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import type { ConfigType } from '@nestjs/config';
import MiniSearch from 'minisearch';
import { hash } from 'node:crypto';
import { resolve } from 'node:path';
import { knowledgeConfig } from '../config/knowledge.config.js';
import { errorMessage } from '../logging/error-message.js';
import { chunkDocument, type Chunk } from './document-chunker.js';
import { loadDocuments, type LoadedDocuments } from './document-loader.js';
import type { Excerpt } from './excerpt.js';

interface IndexedChunk {
  id: number;
  title: string;
  text: string;
}

/** Searches remembered; repeated questions (popular ones, retries during an outage) skip the index. */
const RECENT_SEARCHES = 1000;

/** Question words that would otherwise prefix-match half the corpus ("do" → "document", "down"). */
const STOP_WORDS = new Set(
  'a an and are as at be by can do does for from how i if in is it its me my of on or should so that the this to was what when where which who why will with you your'.split(
    ' ',
  ),
);

/**
 * Terms of a question the search considers, at most: a search costs about one fuzzy lookup per term, and a
 * 10 000-character question of distinct words would otherwise cost ~50 times a short one.
 */
export const MAX_QUERY_TERMS = 32;
/** MiniSearch's own tokenizer: white space and punctuation separate terms. */
const TERM_SEPARATOR = /[\n\r\p{Z}\p{P}]+/u;

/** The question's first MAX_QUERY_TERMS distinct terms that are not stop words, in order. */
function searchTerms(query: string): string {
  const terms = new Set<string>();
  for (const term of query.toLowerCase().split(TERM_SEPARATOR)) {
    if (term === '' || STOP_WORDS.has(term)) continue;
    terms.add(term);
    if (terms.size === MAX_QUERY_TERMS) break;
  }
  return [...terms].join(' ');
}

const createIndex = () =>
  new MiniSearch<IndexedChunk>({
    fields: ['title', 'text'],
    processTerm: (term) => (STOP_WORDS.has(term.toLowerCase()) ? null : term.toLowerCase()),
    // Fuzzy matching is most of a search's cost: one edit catches a typo, and short terms get none.
    searchOptions: {
      boost: { title: 2 },
      prefix: (term: string) => term.length >= 3,
      fuzzy: (term: string) => (term.length >= 5 ? 0.2 : false),
      maxFuzzy: 1,
      combineWith: 'OR',
    },
  });

/** The documents under KNOWLEDGE_DIR, chunked into excerpts at start-up and searched with BM25. */
@Injectable()
export class KnowledgeBase implements OnModuleInit {
  private readonly logger = new Logger(KnowledgeBase.name);
  private index = createIndex();
  /** By MiniSearch id (the position); the index stores only terms. */
  private chunks: Chunk[] = [];
  private documentCount = 0;
  private corpusVersion = 'empty';
  /** The index never changes after start-up, so a search is a pure function of (query, topK). */
  private readonly recentSearches = new CacheableMemory({ lruSize: RECENT_SEARCHES, useClone: false });

  constructor(@Inject(knowledgeConfig.KEY) private readonly config: ConfigType<typeof knowledgeConfig>) {}

  get size(): { documents: number; excerpts: number } {
    return { documents: this.documentCount, excerpts: this.chunks.length };
  }

  /** Changes whenever an excerpt does (a document edited, added or removed): answers built on the old ones are not reused. */
  get version(): string {
    return this.corpusVersion;
  }

  async onModuleInit(): Promise<void> {
    const dir = resolve(this.config.dir);
    let loaded: LoadedDocuments;
    try {
      loaded = await loadDocuments(dir);
    } catch (error) {
      // Without a knowledge base the service still answers from the model and the cache.
      this.logger.warn(`Knowledge dir ${dir} cannot be read (${errorMessage(error)}); serving no excerpts`);
      return;
    }
    for (const file of loaded.skipped) this.logger.warn(`Skipped ${file.path} in ${dir}: ${file.reason}`);
    const chunks = loaded.documents.flatMap((document) => chunkDocument(document, { format: document.format }));
    const index = createIndex();
    index.addAll(chunks.map(({ title, text }, id) => ({ id, title, text })));
    this.index = index;
    this.chunks = chunks;
    this.corpusVersion = hash(
      'sha256',
      JSON.stringify(chunks.map(({ documentId, title, text }) => [documentId, title, text])),
      'base64url',
    ).slice(0, 16);
    this.recentSearches.clear();
    this.documentCount = loaded.documents.length;
    if (chunks.length === 0) {
      this.logger.warn(`Knowledge dir ${dir} holds no .md or .txt text; serving no excerpts`);
    } else {
      this.logger.log(`Indexed ${loaded.documents.length} documents as ${chunks.length} excerpts from ${dir}`);
    }
  }

  /** At most `topK` excerpts, best first; none for a blank query or one that matches nothing. */
  search(query: string, topK: number): Excerpt[] {
    const terms = searchTerms(query);
    if (terms === '') return [];
    const key = `${topK}:${terms}`;
    const recent = this.recentSearches.get<Excerpt[]>(key);
    if (recent) return recent;
    const excerpts = this.index
      .search(terms)
      .slice(0, Math.max(0, topK))
      .map((result) => ({ ...this.chunks[result.id as number], score: Math.round(result.score * 100) / 100 }));
    this.recentSearches.set(key, excerpts);
    return excerpts;
  }
}
