import { IsInt, IsOptional, IsString, Matches, Max, Min } from 'class-validator';

export const DEFAULT_TOP_K = 3;
export const MAX_TOP_K = 20;

/** Body of POST /assistant/query. The length limit comes from config, in MaxQueryLengthPipe. */
export class QueryDto {
  @IsString()
  @Matches(/\S/, { message: 'query must not be empty' })
  query!: string;

  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(MAX_TOP_K)
  topK?: number;
}
