/** A passage of the knowledge base as a query returns it; it goes into the HTTP response unchanged. */
export interface Excerpt {
  documentId: string;
  /** Document title and section heading, e.g. "Operator's guide › When the circuit opens". */
  title: string;
  text: string;
  /** BM25 relevance, rounded to 2 decimals; higher is better. */
  score: number;
}
