import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsInt, IsString, Matches, Max, Min, ValidateIf } from 'class-validator';

export const DEFAULT_TOP_K = 3;
export const MAX_TOP_K = 20;

/**
 * Body of POST /assistant/query. The length limit comes from config, in MaxQueryLengthPipe.
 * class-validator runs decorators bottom-up and stops at the first error: the type check sits last.
 */
export class QueryDto {
  @ApiProperty({
    description: 'The question; not blank, at most ASSISTANT_MAX_QUERY_LENGTH characters (2000 unless configured otherwise)',
    minLength: 1,
    example: 'What does half-open mean?',
  })
  @Matches(/\S/, { message: 'query must not be empty' })
  @IsString()
  query!: string;

  @ApiPropertyOptional({
    type: 'integer',
    minimum: 1,
    maximum: MAX_TOP_K,
    default: DEFAULT_TOP_K,
    description: 'How many knowledge-base excerpts to use as context and return',
  })
  // Only an absent topK takes the default; null is a wrong value, not a missing one.
  @ValidateIf((_body: QueryDto, value: unknown) => value !== undefined)
  @Max(MAX_TOP_K)
  @Min(1)
  @IsInt()
  topK?: number;
}
