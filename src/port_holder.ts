/**
 * Which process listens on a TCP port (Linux, from /proc), so a busy port can be named in the
 * error; `undefined` where that cannot be told (other systems, other users' processes).
 *
 * @module
 */

/** `pid (command)` of the process listening on `port`, if this process may see it. */
export function portHolder(port: number): string | undefined {
  try {
    const inodes = new Set<string>();
    for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
      let text = "";
      try {
        text = Deno.readTextFileSync(table);
      } catch {
        continue;
      }
      for (const line of text.split("\n").slice(1)) {
        const f = line.trim().split(/\s+/);
        // local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the socket inode.
        if (f.length > 9 && parseInt(f[1].split(":")[1], 16) === port && f[3] === "0A") {
          inodes.add(f[9]);
        }
      }
    }
    if (inodes.size === 0) return undefined;
    for (const proc of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(proc.name)) continue;
      try {
        for (const fd of Deno.readDirSync(`/proc/${proc.name}/fd`)) {
          let target = "";
          try {
            target = Deno.readLinkSync(`/proc/${proc.name}/fd/${fd.name}`);
          } catch {
            continue; // closed since the listing: a busy process opens and closes fds all along
          }
          const inode = target.match(/^socket:\[(\d+)\]$/)?.[1];
          if (inode && inodes.has(inode)) {
            const command = Deno.readTextFileSync(`/proc/${proc.name}/comm`).trim();
            return `pid ${proc.name} (${command})`;
          }
        }
      } catch { /* a process that ended or is not ours */ }
    }
  } catch { /* no /proc */ }
  return undefined;
}
