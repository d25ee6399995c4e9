// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

/// An ERC-20 of the early kind (like MKR): symbol() returns bytes32 and decimals() a uint256.
contract LegacyToken {
    event Transfer(address indexed from, address indexed to, uint256 value);

    bytes32 public symbol;
    uint256 public decimals;
    mapping(address => uint256) public balanceOf;

    constructor(bytes32 symbol_, uint256 decimals_) {
        symbol = symbol_;
        decimals = decimals_;
    }

    function mint(address to, uint256 value) external {
        balanceOf[to] += value;
        emit Transfer(address(0), to, value);
    }

    function transfer(address to, uint256 value) external returns (bool) {
        balanceOf[msg.sender] -= value;
        balanceOf[to] += value;
        emit Transfer(msg.sender, to, value);
        return true;
    }
}
