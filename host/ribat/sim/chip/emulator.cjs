// An emulated RP2040 (rp2040js) running a real firmware image, for ribat.sim.chip.
//
//   node emulator.cjs BOOTROM FLASH_IMAGE UID_HEX [UF2]
//
// stdin: bytes from the host into the USB CDC (flow-controlled by the CDC's own FIFO: a
// byte waits here rather than overrun it); stdout: what the firmware writes to its USB CDC.
// stderr: lines "@ribat {json}" are reports for the supervisor (every half second the chip
// time and flash operations; a watchdog reset's registers); anything else is a log line.
// Control lines (a power cut to arm) come in as JSON on the file descriptor
// $RIBAT_CHIP_CONTROL_FD, if set.
//
// FLASH_IMAGE is the chip's 2 MB serial flash: made from UF2 when it does not exist, kept
// up to date operation by operation (a page program, a sector erase), so that killing
// this process at any moment is a power cut between two flash operations. A cut can also
// be armed to fall in the middle of one (half a page programmed, half a sector erased).
"use strict";

const fs = require("fs");
const net = require("net");
const { BasePeripheral, ConsoleLogger, LogLevel, Simulator, USBCDC } = require("rp2040js");

const [bootromPath, flashPath, uidHex, uf2Path] = process.argv.slice(2);
const FLASH_BYTES = 2 * 1024 * 1024;
const FLASH_START = 0x10000000;
const SECTOR = 4096;
const PAGE = 256;

function report(doc) {
  process.stderr.write("@ribat " + JSON.stringify(doc) + "\n");
}

// -- the serial flash (a W25Q16JV: 2 MB, 4 KB sectors, 256-byte pages) -------------------

// How long an operation keeps the chip busy (its status's BUSY bit set, and any command
// but a status read ignored), in the chip's time: the W25Q16JV datasheet's typical
// figures (tPP, tSE, tBE1, tBE2, tCE; the maximums are 3 to 10 times longer).
const BUSY_NS = { 0x02: 0.4e6, 0x20: 45e6, 0x52: 120e6, 0xd8: 150e6, 0xc7: 5e9, 0x60: 5e9 };

class SerialFlash {
  constructor(image, fd, uid, now) {
    this.image = image; // the chip's view of flash: what XIP reads
    this.fd = fd;
    this.uid = uid;
    this.now = now; // the chip's time, in ns
    this.wel = false; // write enable latch
    this.ops = 0; // program and erase operations done
    this.busyUntil = 0; // the operation under way ends then
    this.busyNs = 0; // of the chip's time, what the flash's operations took
    this.cutAfter = -1; // a power cut in the middle of the operation after this many more
    this.begin();
  }
  busy() {
    return this.now() < this.busyUntil;
  }
  begin() {
    this.cmd = -1;
    this.count = 0; // bytes of this transaction after the command
    this.addr = 0;
    this.data = [];
  }
  // One byte in, one byte out, as SPI does; the command acts when the chip select rises.
  exchange(byte) {
    if (this.cmd < 0) {
      this.cmd = byte;
      if (byte === 0x06 && !this.busy()) this.wel = true;
      if (byte === 0x04 && !this.busy()) this.wel = false;
      return 0xff;
    }
    const n = this.count++;
    switch (this.cmd) {
      case 0x05: // status 1: BUSY, WEL
        return (this.busy() ? 0x01 : 0x00) | (this.wel ? 0x02 : 0x00);
      case 0x35: // status 2: QE set, as boot2 leaves it
        return 0x02;
      case 0x9f: // JEDEC id: Winbond, W25Q16JV
        return [0xef, 0x40, 0x15][n] ?? 0xff;
      case 0x4b: // unique id: 4 dummy bytes, then 8 bytes
        return n < 4 ? 0xff : (this.uid[n - 4] ?? 0xff);
      case 0x03: // read
      case 0x0b: // fast read (one dummy byte)
        if (n < 3) {
          this.addr = (this.addr << 8) | byte;
          return 0xff;
        }
        if (this.cmd === 0x0b && n === 3) return 0xff;
        return this.image[this.addr++ % FLASH_BYTES];
      case 0x02: // page program
      case 0x20: // 4 KB sector erase
      case 0x52: // 32 KB block erase
      case 0xd8: // 64 KB block erase
        if (n < 3) this.addr = (this.addr << 8) | byte;
        else this.data.push(byte);
        return 0xff;
      default:
        return 0xff;
    }
  }
  end() {
    const { cmd } = this;
    // a program or an erase, write-enabled and with the flash idle (else ignored)
    if (cmd in BUSY_NS && this.wel && !this.busy()) {
      this.busyUntil = this.now() + BUSY_NS[cmd];
      this.busyNs += BUSY_NS[cmd];
      this.wel = false;
      if (cmd === 0x02 && this.count >= 3) this.program(this.addr, this.data);
      else if (cmd === 0x20) this.erase(this.addr, SECTOR);
      else if (cmd === 0x52) this.erase(this.addr, 32 * 1024);
      else if (cmd === 0xd8) this.erase(this.addr, 64 * 1024);
      else if (cmd === 0xc7 || cmd === 0x60) this.erase(0, FLASH_BYTES);
    }
    this.begin();
  }
  // Programming only clears bits; the address wraps within its page.
  program(addr, bytes) {
    const page = addr & ~(PAGE - 1);
    let n = bytes.length;
    const cut = this.torn();
    if (cut) n = n >> 1; // half the page programmed when the power went
    for (let i = 0; i < n; i++) {
      const at = page + ((addr + i) & (PAGE - 1));
      this.image[at] &= bytes[i];
    }
    this.persist(page, PAGE);
    this.done(cut);
  }
  erase(addr, size) {
    const start = addr & ~(size - 1);
    const cut = this.torn();
    this.image.fill(0xff, start, start + (cut ? size >> 1 : size));
    this.persist(start, size);
    this.done(cut);
  }
  torn() {
    return this.cutAfter === 0;
  }
  done(cut) {
    this.ops++;
    if (this.cutAfter >= 0) this.cutAfter--;
    if (cut) {
      report({ power_cut: "flash", ops: this.ops });
      process.exit(75); // the power went in the middle of this operation
    }
  }
  persist(start, size) {
    fs.writeSync(this.fd, this.image, start, size, start);
  }
}

// The SSI (0x18000): the host side of the flash's SPI. Transfers are instant: a byte
// written to DR0 is exchanged with the flash and its answer waits in the receive FIFO.
class FlashSSI extends BasePeripheral {
  constructor(rp2040, flash) {
    super(rp2040, "SSI");
    this.flash = flash;
    this.rx = [];
    this.regs = new Map();
    this.selected = false; // the chip select, forced low through IO_QSPI
  }
  readUint32(offset) {
    switch (offset) {
      case 0x20: // TXFLR: sent at once
        return 0;
      case 0x24: // RXFLR
        return this.rx.length;
      case 0x28: // SR: TFNF | TFE, RFNE when something waits
        return 0x06 | (this.rx.length ? 0x08 : 0);
      case 0x58:
        return 0x51535049;
      case 0x5c:
        return 0x3430312a;
      case 0x60: // DR0
        return this.rx.length ? this.rx.shift() : 0;
      default:
        return this.regs.get(offset) ?? 0;
    }
  }
  writeUint32(offset, value) {
    if (offset === 0x60) {
      // boot2 talks to the flash with the SSI's own select: its commands (status, QE)
      // need nothing of the flash here; the ROM's flash routines force the select
      const answer = this.selected ? this.flash.exchange(value & 0xff) : 0;
      this.rx.push(answer);
      if (this.rx.length > 16) this.rx.shift();
      return;
    }
    if (offset === 0x08 && (value & 1) === 0) this.rx = []; // SSIENR off empties the FIFOs
    this.regs.set(offset, value);
  }
}

// IO_QSPI (0x40018): GPIO1's control register (0x0c) forces the flash's chip select.
class QspiIO extends BasePeripheral {
  constructor(rp2040, ssi) {
    super(rp2040, "IO_QSPI");
    this.ssi = ssi;
    this.regs = new Map();
  }
  readUint32(offset) {
    return this.regs.get(offset) ?? 0;
  }
  writeUint32(offset, value) {
    this.regs.set(offset, value);
    if (offset !== 0x0c) return;
    const over = (value >> 8) & 3;
    if (over === 2 && !this.ssi.selected) {
      this.ssi.selected = true;
      this.ssi.flash.begin();
    } else if (over !== 2 && this.ssi.selected) {
      this.ssi.selected = false;
      this.ssi.flash.end();
    }
  }
}

// -- the image -----------------------------------------------------------------------------

function loadUF2(data, image) {
  for (let at = 0; at + 512 <= data.length; at += 512) {
    const block = data.subarray(at, at + 512);
    const view = new DataView(block.buffer, block.byteOffset, 512);
    if (view.getUint32(0, true) !== 0x0a324655 || view.getUint32(4, true) !== 0x9e5d5157) {
      throw new Error("not a UF2 file: " + uf2Path);
    }
    const target = view.getUint32(12, true);
    const size = view.getUint32(16, true);
    image.set(block.subarray(32, 32 + size), target - FLASH_START);
  }
}

const simulator = new Simulator(); // (its clock and chip; its run loop is ours: see run())
const mcu = simulator.rp2040;
mcu.logger = new ConsoleLogger(LogLevel.Error); // (its warnings: peripherals it lacks, PLLs)
const rom = fs.readFileSync(bootromPath);
mcu.loadBootrom(new Uint32Array(rom.buffer, rom.byteOffset, rom.length / 4));
if (!fs.existsSync(flashPath)) {
  const fresh = new Uint8Array(FLASH_BYTES).fill(0xff);
  loadUF2(fs.readFileSync(uf2Path), fresh);
  fs.writeFileSync(flashPath + ".new", fresh);
  fs.renameSync(flashPath + ".new", flashPath);
}
const fd = fs.openSync(flashPath, "r+");
fs.readSync(fd, mcu.flash, 0, FLASH_BYTES, 0);
const uid = Buffer.from(uidHex, "hex");
const flash = new SerialFlash(mcu.flash, fd, uid, () => simulator.clock.nanos);
const ssi = new FlashSSI(mcu, flash);
mcu.peripherals[0x18000] = ssi;
mcu.peripherals[0x40018] = new QspiIO(mcu, ssi);

// -- resets -----------------------------------------------------------------------------------
// rp2040js leaves a watchdog reset to its user: this process ends (status 76) as the chip's
// RAM would be lost, and the supervisor starts the chip again, giving it back what a reset
// keeps: the watchdog's reason and scratch registers ($RIBAT_CHIP_RESET).
const WATCHDOG_RESET_EXIT = 76;
const wdt = mcu.peripherals[0x40058];
if (process.env.RIBAT_CHIP_RESET) {
  const kept = JSON.parse(process.env.RIBAT_CHIP_RESET);
  wdt.reason = kept.reason;
  wdt.scratchData.set(kept.scratch);
}
wdt.onWatchdogTrigger = () => {
  report({ reset: { reason: wdt.reason, scratch: Array.from(wdt.scratchData) } });
  process.exit(WATCHDOG_RESET_EXIT);
};

// -- USB CDC -------------------------------------------------------------------------------

const cdc = new USBCDC(mcu.usbCtrl);
const FIFO_ROOM = 512; // the CDC's receive FIFO: bytes past it would be lost
const waiting = []; // host bytes not yet in the FIFO
cdc.onSerialData = (buffer) => process.stdout.write(Buffer.from(buffer));
// A host NAKs the firmware's OUT buffer until it has bytes to send. rp2040js's CDC answers it
// at once, empty when it has none: the firmware takes the empty packet, arms its buffer again,
// and so on every 45 us of the chip's time, in its USB interrupt: two thirds of the chip's
// cycles went there (a Python loop ran 3x slower than with interrupts off). So an armed
// buffer waits here for the host's bytes.
let armedOut = 0; // the size of the OUT buffer the firmware armed while none were waiting
const answerRead = mcu.usbCtrl.onEndpointRead;
mcu.usbCtrl.onEndpointRead = (endpoint, size) => {
  if (endpoint === cdc.outEndpoint && cdc.txFIFO.itemCount === 0) armedOut = size;
  else answerRead(endpoint, size);
};
function feed() {
  while (waiting.length && cdc.txFIFO.itemCount < FIFO_ROOM) cdc.sendSerialByte(waiting.shift());
  if (armedOut && cdc.txFIFO.itemCount) {
    const size = armedOut;
    armedOut = 0;
    answerRead(cdc.outEndpoint, size);
  }
}
process.stdin.on("data", (chunk) => {
  for (const b of chunk) waiting.push(b);
  feed();
});
process.stdin.on("end", () => process.exit(0));

// -- control ---------------------------------------------------------------------------------

const controlFd = Number(process.env.RIBAT_CHIP_CONTROL_FD || -1);
// (a pipe read by the event loop, not by fs's threads: a thread blocked in its read would
// keep this process from ending at a power cut or a watchdog reset)
const control = controlFd >= 0 ? new net.Socket({ fd: controlFd, readable: true }) : null;
let pending = "";
control?.on("data", (chunk) => {
  pending += chunk.toString();
  let nl;
  while ((nl = pending.indexOf("\n")) >= 0) {
    const doc = JSON.parse(pending.slice(0, nl));
    pending = pending.slice(nl + 1);
    if ("cut_after_flash_ops" in doc) flash.cutAfter = doc.cut_after_flash_ops ?? -1;
  }
});
control?.on("error", () => {});

// -- time ------------------------------------------------------------------------------------
// Running, the chip's clock counts its cycles (125 MHz): code takes the chip's time, however
// slowly this host emulates it. Waiting for an interrupt, the chip lets real time pass: its
// clock catches up with this host's and its timers fire when they would on a board, so
// that what waits on the host (a session's idle time, a watchdog) waits as long.
// (rp2040js's own Simulator loop spins without yielding when the chip waits with no timer
// set, and warps through timers ahead of real time.)

const CYCLE_NS = 8;
const SLICE = 50000; // instructions between looks at the host's input
const clock = simulator.clock;
const started = Date.now();
const t0 = process.hrtime.bigint();
const realNs = () => Number(process.hrtime.bigint() - t0);

let busyNs = 0; // of the chip's time, what it spent running code (not waiting for an interrupt)

function run() {
  feed();
  for (let i = 0; i < SLICE; i++) {
    if (!mcu.core.waiting) {
      const ns = mcu.core.executeInstruction() * CYCLE_NS;
      clock.tick(ns);
      busyNs += ns;
      continue;
    }
    const behind = realNs() - clock.nanos; // real time the chip has not lived yet
    const next = clock.nanosToNextAlarm; // 0: no timer set
    if (next > 0 && next <= behind) {
      clock.tick(next); // its timer fires, as it would have by now
      continue;
    }
    if (behind > 0) clock.tick(behind);
    const wait = next > 0 ? Math.max(0, next - Math.max(0, behind)) / 1e6 : 5;
    setTimeout(run, Math.min(5, wait)); // idle: the host's input or the timer will wake it
    return;
  }
  setImmediate(run);
}

setInterval(() => {
  const chip_ms = Math.round(clock.nanos / 1e6);
  const busy_ms = Math.round(busyNs / 1e6);
  const flash_ms = Math.round(flash.busyNs / 1e6);
  report({
    status: { chip_ms, busy_ms, flash_ms, flash_ops: flash.ops, wall_ms: Date.now() - started },
  });
}, 500);
mcu.core.PC = FLASH_START; // boot2, as the ROM would jump to it
run();
