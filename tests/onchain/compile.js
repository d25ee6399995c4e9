// Compiles contracts/*.sol with solc-js and prints {contractName: {abi, bytecode}} as JSON.
// The EVM version matches the test node's hardfork (ganache 7.9: shanghai).
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const EVM_VERSION = "shanghai";
const folder = path.join(__dirname, "contracts");
const sources = {};
for (const file of fs.readdirSync(folder).filter((name) => name.endsWith(".sol")).sort()) {
  sources[file] = { content: fs.readFileSync(path.join(folder, file), "utf8") };
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    evmVersion: EVM_VERSION,
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  process.stderr.write(errors.map((e) => e.formattedMessage).join("\n"));
  process.exit(1);
}
const contracts = {};
for (const file of Object.keys(output.contracts)) {
  for (const [name, compiled] of Object.entries(output.contracts[file])) {
    if (compiled.evm.bytecode.object) {
      contracts[name] = { abi: compiled.abi, bytecode: "0x" + compiled.evm.bytecode.object };
    }
  }
}
process.stdout.write(JSON.stringify(contracts));
