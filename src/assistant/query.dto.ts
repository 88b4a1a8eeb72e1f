import { IsInt, IsString, Matches, Max, Min, ValidateIf } from 'class-validator';

export const DEFAULT_TOP_K = 3;
export const MAX_TOP_K = 20;

/**
 * Body of POST /assistant/query. The length limit comes from config, in MaxQueryLengthPipe.
 * class-validator runs decorators bottom-up and stops at the first error: the type check sits last.
 */
export class QueryDto {
  @Matches(/\S/, { message: 'query must not be empty' })
  @IsString()
  query!: string;

  // Only an absent topK takes the default; null is a wrong value, not a missing one.
  @ValidateIf((_body: QueryDto, value: unknown) => value !== undefined)
  @Max(MAX_TOP_K)
  @Min(1)
  @IsInt()
  topK?: number;
}
