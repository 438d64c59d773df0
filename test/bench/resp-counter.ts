/**
 * Counts the Redis commands in a client→server byte stream by parsing RESP
 * framing: every command a client sends is an array `*<n>\r\n` of `n` bulk
 * strings `$<len>\r\n<bytes>\r\n`; the first bulk string is the command name.
 * Works across arbitrary chunk boundaries. Inline commands (one text line)
 * are counted too, though ioredis never sends them.
 */
export class RespCommandCounter {
  commands = 0;
  readonly names = new Map<string, number>();
  private state: 'top' | 'bulkHeader' | 'bulkBody' = 'top';
  private line = '';
  private remaining = 0;
  private element = 0;
  private skip = 0;
  private capturing = false;
  private name = '';

  reset(): void {
    this.commands = 0;
    this.names.clear();
  }

  feed(buf: Buffer): void {
    let i = 0;
    while (i < buf.length) {
      if (this.state === 'bulkBody') {
        const take = Math.min(this.skip, buf.length - i);
        if (this.capturing && this.name.length < 40) this.name += buf.toString('latin1', i, i + take);
        i += take;
        this.skip -= take;
        if (this.skip === 0) {
          if (this.capturing) {
            this.count(this.name.replace(/\r\n$/, ''));
            this.capturing = false;
          }
          this.remaining--;
          this.state = this.remaining > 0 ? 'bulkHeader' : 'top';
        }
        continue;
      }
      const nl = buf.indexOf(10, i);
      if (nl === -1) {
        this.line += buf.toString('latin1', i);
        return;
      }
      this.line += buf.toString('latin1', i, nl + 1);
      i = nl + 1;
      const line = this.line.replace(/\r?\n$/, '');
      this.line = '';
      this.onLine(line);
    }
  }

  private onLine(line: string): void {
    if (this.state === 'top') {
      if (line.startsWith('*')) {
        const n = Number.parseInt(line.slice(1), 10);
        if (n > 0) {
          this.remaining = n;
          this.element = 0;
          this.state = 'bulkHeader';
        } else {
          this.count('(empty)');
        }
      } else if (line.trim() !== '') {
        this.count(line.trim().split(/\s+/)[0]!);
      }
      return;
    }
    // bulkHeader
    const len = Number.parseInt(line.slice(1), 10);
    this.skip = Math.max(0, len) + 2;
    this.capturing = this.element === 0;
    this.name = '';
    this.element++;
    this.state = 'bulkBody';
  }

  private count(name: string): void {
    this.commands++;
    const key = name.toUpperCase();
    this.names.set(key, (this.names.get(key) ?? 0) + 1);
  }
}
