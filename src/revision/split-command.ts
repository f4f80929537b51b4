/**
 * Splits a command line into argv the way a POSIX shell splits words, without expanding
 * anything: whitespace separates words; '...' is literal; "..." keeps spaces and honours
 * \" \\ \$ \` escapes; a backslash outside quotes escapes the next character. `{port}` and
 * `$VARS` stay as written (the backend substitutes `{port}`; nothing expands `$VARS`).
 * Throws an Error whose message says what is wrong (unterminated quote, trailing backslash).
 */
export function splitCommand(line: string): string[] {
  const argv: string[] = [];
  let word = '';
  let inWord = false;
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unterminated single quote at character ${i + 1}`);
      word += line.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (c === '"') {
      const start = i;
      i++;
      let closed = false;
      while (i < line.length) {
        const d = line[i]!;
        if (d === '"') {
          closed = true;
          i++;
          break;
        }
        if (d === '\\' && i + 1 < line.length && '"\\$`\n'.includes(line[i + 1]!)) {
          if (line[i + 1] !== '\n') word += line[i + 1];
          i += 2;
          continue;
        }
        word += d;
        i++;
      }
      if (!closed) throw new Error(`unterminated double quote at character ${start + 1}`);
      inWord = true;
    } else if (c === '\\') {
      if (i + 1 >= line.length) throw new Error('trailing backslash');
      if (line[i + 1] !== '\n') {
        word += line[i + 1];
        inWord = true;
      }
      i += 2;
    } else if (/\s/.test(c)) {
      if (inWord) argv.push(word);
      word = '';
      inWord = false;
      i++;
    } else {
      word += c;
      inWord = true;
      i++;
    }
  }
  if (inWord) argv.push(word);
  return argv;
}
