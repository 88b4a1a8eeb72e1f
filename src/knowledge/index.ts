export { chunkDocument, type Chunk, type ChunkOptions, type SourceDocument } from './document-chunker.js';
export type { Excerpt } from './excerpt.js';
export { KnowledgeBase } from './knowledge-base.js';
export { KnowledgeModule } from './knowledge.module.js';
