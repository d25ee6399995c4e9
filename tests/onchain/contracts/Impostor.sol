// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

/// Events that share a DEX or ERC-20 signature but are not what they look like: a Mint with
/// Uniswap v2's signature from a contract with no token0() (Compound's cTokens emit this one), and
/// an ERC-721 Transfer (same signature as ERC-20's, the token id indexed as a fourth topic).
contract Impostor {
    event Mint(address indexed sender, uint256 amount0, uint256 amount1);
    event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);

    function emitBoth(address to, uint256 tokenId) external {
        emit Mint(msg.sender, 1, 2);
        emit Transfer(address(0), to, tokenId);
    }
}
